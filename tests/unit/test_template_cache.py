"""Templates are compiled once per process and folder, and a changed file is still picked up.

A tick renders the same subject and body for every message of a job, and the next tick (the
daemon, ``backfill``, ``simulate --run-jobs``) renders them again: compiling them each time was
a measurable part of a launch.
"""

from __future__ import annotations

import os
from pathlib import Path

from closeloop.channels.templates import TemplateSet


def test_one_set_per_folder_compiles_each_inline_template_once(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    first = TemplateSet.shared(tmp_path / "templates")
    assert TemplateSet.shared(tmp_path / "templates" / ".." / "templates") is first
    assert TemplateSet.shared(tmp_path) is not first

    subject = "{{ account.name }}: connect"
    assert first.render_string(subject, {"account": {"name": "Acme"}}, label="s") == "Acme: connect"
    compiled = first._strings[subject]
    assert first.render_string(subject, {"account": {"name": "Zeta"}}, label="s") == "Zeta: connect"
    assert first._strings[subject] is compiled and len(first._strings) == 1


def test_a_template_file_changed_on_disk_is_recompiled(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    body = folder / "nudge.txt.j2"
    body.write_text("Hello {{ name }}", encoding="utf-8")
    templates = TemplateSet.shared(folder)
    assert templates.render_file("nudge.txt.j2", {"name": "Ada"}) == "Hello Ada"
    body.write_text("Goodbye {{ name }}", encoding="utf-8")
    later = body.stat().st_mtime + 5  # Jinja compares modification times
    os.utime(body, (later, later))
    assert templates.render_file("nudge.txt.j2", {"name": "Ada"}) == "Goodbye Ada"


def test_a_pinned_view_looks_at_each_file_once(tmp_path: Path) -> None:
    """A tick renders thousands of messages from a pinned view: the files as they were when it
    started, with no look at the disk per message; the shared set still sees changes."""
    folder = tmp_path / "templates"
    folder.mkdir()
    body = folder / "nudge.txt.j2"
    body.write_text("Hello {{ name }}", encoding="utf-8")
    shared = TemplateSet.shared(folder)
    pinned = shared.pinned()
    assert pinned.render_file("nudge.txt.j2", {"name": "Ada"}) == "Hello Ada"
    assert not pinned.exists("nudge.html.j2")
    body.write_text("Goodbye {{ name }}", encoding="utf-8")
    later = body.stat().st_mtime + 5
    os.utime(body, (later, later))
    (folder / "nudge.html.j2").write_text("<p>{{ name }}</p>", encoding="utf-8")
    assert pinned.render_file("nudge.txt.j2", {"name": "Bo"}) == "Hello Bo"
    assert not pinned.exists("nudge.html.j2")
    assert shared.render_file("nudge.txt.j2", {"name": "Ada"}) == "Goodbye Ada"
    assert shared.exists("nudge.html.j2")
    assert shared.pinned().exists("nudge.html.j2")
