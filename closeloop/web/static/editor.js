// The job editor: line numbers beside the YAML, and a click on a located problem puts the
// cursor at its line and column. Everything else (validation, power, dry run, save, launch)
// is htmx posting the editor's form.
(function () {
  "use strict";

  function numberLines(textarea) {
    var gutter = textarea.parentElement.querySelector(".gutter");
    if (!gutter) return;
    var count = textarea.value.split("\n").length;
    var lines = [];
    for (var i = 1; i <= count; i++) lines.push(i);
    gutter.textContent = lines.join("\n");
    gutter.scrollTop = textarea.scrollTop;
  }

  function wire(root) {
    var textarea = (root || document).querySelector("#yaml");
    if (!textarea || textarea.dataset.wired) return;
    textarea.dataset.wired = "true";
    numberLines(textarea);
    textarea.addEventListener("input", function () { numberLines(textarea); });
    textarea.addEventListener("scroll", function () {
      var gutter = textarea.parentElement.querySelector(".gutter");
      if (gutter) gutter.scrollTop = textarea.scrollTop;
    });
    // Tab indents by two spaces (YAML forbids tabs); Escape leaves the field for the keyboard.
    textarea.addEventListener("keydown", function (event) {
      if (event.key !== "Tab" || event.shiftKey || textarea.dataset.tabOut) return;
      event.preventDefault();
      var start = textarea.selectionStart;
      textarea.setRangeText("  ", start, textarea.selectionEnd, "end");
      textarea.dispatchEvent(new Event("input", { bubbles: true }));
    });
    textarea.addEventListener("keyup", function (event) {
      if (event.key === "Escape") textarea.dataset.tabOut = "true";
    });
    textarea.addEventListener("blur", function () { delete textarea.dataset.tabOut; });
  }

  function goTo(line, column) {
    var textarea = document.querySelector("#yaml");
    if (!textarea) return;
    var lines = textarea.value.split("\n");
    var offset = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
    offset += Math.max(column - 1, 0);
    textarea.focus();
    textarea.setSelectionRange(offset, offset);
    var lineHeight = parseFloat(getComputedStyle(textarea).lineHeight) || 18;
    textarea.scrollTop = Math.max((line - 3) * lineHeight, 0);
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target.closest("button.goto") : null;
    if (!target) return;
    goTo(parseInt(target.dataset.line, 10) || 1, parseInt(target.dataset.column, 10) || 1);
  });
  // The form follows the YAML after each validation, unless someone is typing in the form.
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var fields = document.getElementById("editor-fields");
    if (fields && fields.contains(document.activeElement) && event.detail.target === fields) {
      event.preventDefault();
    }
  });
  document.addEventListener("DOMContentLoaded", function () { wire(document); });
  document.addEventListener("htmx:load", function (event) { wire(event.target); });
})();
