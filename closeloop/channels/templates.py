"""Jinja templates in a sandbox: what a job's author writes can read data, never run code.

Templates live in the project's ``templates/`` folder; subjects and Slack texts are inline
template strings. Both render in :class:`jinja2.sandbox.SandboxedEnvironment` (attribute access
to Python internals such as ``__globals__`` is refused), with strict undefined variables, and HTML
files autoescaped. Every failure becomes a :class:`closeloop.errors.RenderError` that says where:
the template file and line, the variable, and (from the caller) the job, step and account.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from closeloop.errors import RenderError

TEMPLATES_DIR = "templates"
MAX_INLINE_TEMPLATES = 4096  # compiled inline templates kept per set (subjects, Slack texts)


class TemplateSet:
    """The templates of one project folder (``folder`` is its ``templates/``).

    Each template is compiled once and kept: files by Jinja's own cache (recompiled only when the
    file changes on disk), inline templates (subjects, texts) by their source. :meth:`shared`
    gives one set per folder for the life of the process, so a tick, the next tick and every job
    of the project render from the same compiled templates. :meth:`pinned` gives a view that
    looks at the disk once per file (whether it exists, whether it changed) instead of once per
    message: a tick's thousands of messages render from the files as they were at its start.
    """

    _shared: ClassVar[dict[Path, TemplateSet]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def shared(cls, folder: Path) -> TemplateSet:
        """The process's set for ``folder`` (created the first time)."""
        key = folder.resolve()
        with cls._shared_lock:
            found = cls._shared.get(key)
            if found is None:
                found = cls._shared[key] = cls(folder)
            return found

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        loader = jinja2.FileSystemLoader(folder)
        self._text = SandboxedEnvironment(
            loader=loader, undefined=jinja2.StrictUndefined, autoescape=False
        )
        self._html = SandboxedEnvironment(
            loader=loader, undefined=jinja2.StrictUndefined, autoescape=True
        )
        self._strings: dict[str, jinja2.Template] = {}
        self._looked: dict[tuple[str, bool | None], Any] | None = None  # pinned views only

    def pinned(self) -> TemplateSet:
        """This set's compiled templates, with each file looked up on disk once for the life of
        the view (use one per batch of messages, never for long)."""
        view = copy.copy(self)
        view._looked = {}
        return view

    def exists(self, name: str) -> bool:
        return bool(self._look((name, None), lambda: (self.folder / name).is_file()))

    def render_file(self, name: str, variables: Mapping[str, Any], *, html: bool = False) -> str:
        """Render ``templates/<name>``; HTML files are autoescaped."""
        environment = self._html if html else self._text
        try:
            template = self._look((name, html), lambda: environment.get_template(name))
            return str(template.render(variables))
        except (jinja2.TemplateError, SecurityError) as error:
            raise RenderError(_describe(error, name)) from error
        except Exception as error:  # a filter or test that raised: still one located failure
            raise RenderError(f"template {name}: {type(error).__name__}: {error}") from error

    def _look(self, key: tuple[str, bool | None], look: Callable[[], Any]) -> Any:
        if self._looked is None:
            return look()
        if key not in self._looked:
            self._looked[key] = look()
        return self._looked[key]

    def render_string(self, source: str, variables: Mapping[str, Any], *, label: str) -> str:
        """Render an inline template (a subject, a Slack text); ``label`` names it in errors."""
        try:
            template = self._strings.get(source)
            if template is None:
                template = self._text.from_string(source)
                if len(self._strings) >= MAX_INLINE_TEMPLATES:
                    self._strings.clear()
                self._strings[source] = template
            return template.render(variables)
        except (jinja2.TemplateError, SecurityError) as error:
            raise RenderError(_describe(error, label)) from error
        except Exception as error:
            raise RenderError(f"{label}: {type(error).__name__}: {error}") from error


def _describe(error: Exception, name: str) -> str:
    """``name:line: message``, with the line where Jinja knows it."""
    filename = getattr(error, "filename", None) or name
    line = getattr(error, "lineno", None) or _runtime_line(error)
    if filename != name and not str(filename).startswith("<"):
        filename = Path(filename).name
    where = f"{filename}:{line}" if line else f"{filename}"
    if isinstance(error, SecurityError):
        return f"{where}: refused by the template sandbox: {error}"
    if isinstance(error, jinja2.UndefinedError):
        return f"{where}: undefined variable: {error}"
    if isinstance(error, jinja2.TemplateSyntaxError):
        return f"{where}: template syntax error: {error.message}"
    if isinstance(error, jinja2.TemplateNotFound):
        return f"{where}: template not found"
    return f"{where}: {error}"


def _runtime_line(error: Exception) -> int | None:
    """The template line a render-time error came from.

    Jinja rewrites the traceback of an error raised while rendering so that its frames point at
    the template source (``<template>`` for inline strings); the innermost such frame is the line.
    """
    line = None
    traceback = error.__traceback__
    while traceback is not None:
        filename = traceback.tb_frame.f_code.co_filename
        if filename == "<template>" or filename.endswith(".j2"):
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line
