"""The one exception hierarchy of the toolkit.

Every error a user can cause (a malformed event, preset, checkpoint, plugin or tool) is a
``MosaicError`` subclass whose message names the problem and where it is. Catch ``MosaicError``
to handle anything the toolkit raises on purpose; anything else is a bug.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs


class MosaicError(Exception):
    """Base class of every error the toolkit raises on purpose."""


# --- configuration -------------------------------------------------------------------------------


@attrs.frozen
class ConfigProblem:
    """One problem in a configuration: where (a ``$.a.b[0]`` path) and what."""

    path: str
    message: str
    line: int | None = None
    hint: str | None = None

    def render(self) -> str:
        where = self.path if self.line is None else f"{self.path} (line {self.line})"
        text = f"{where}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class ConfigError(MosaicError):
    """A configuration (preset, component config, CLI override) is invalid.

    Carries every problem found, not just the first.
    """

    def __init__(self, problems: Sequence[ConfigProblem], *, source: str | None = None) -> None:
        self.problems = tuple(problems)
        self.source = source
        header = f"invalid configuration in {source}" if source else "invalid configuration"
        lines = [f"{header} ({len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}):"]
        lines += [f"  {problem.render()}" for problem in self.problems]
        super().__init__("\n".join(lines))


class InvalidFieldError(MosaicError, ValueError):
    """One field of a config class holds a value its rules refuse (see :mod:`mosaic.core.validators`).

    ``field`` is the attribute's name, kept apart from ``detail`` so the structuring code can report
    the problem at ``$.path.field`` without parsing the message.
    """

    def __init__(self, field: str, detail: str) -> None:
        self.field = field
        self.detail = detail
        super().__init__(f"{field}: {detail}")


# --- plugins and the registry --------------------------------------------------------------------


class PluginError(MosaicError):
    """A plugin failed to import, register, or declared something invalid."""

    def __init__(self, plugin: str, message: str) -> None:
        self.plugin = plugin
        self.detail = message
        super().__init__(
            f"plugin {plugin!r}: {message} "
            f"(disable it with MOSAIC_DISABLE_PLUGINS={plugin})"
        )


class RegistryError(MosaicError):
    """Base class of registry lookup and registration errors."""


class InvalidComponentError(RegistryError):
    """A component was registered with an ill-formed ID, kind, factory or config class."""


class DuplicateComponentError(RegistryError):
    """Two distributions provide the same semantic ID."""

    def __init__(self, component_id: str, first: str, second: str) -> None:
        self.component_id = component_id
        self.first = first
        self.second = second
        super().__init__(
            f"{component_id} is provided twice: by {first} and by {second}; "
            "uninstall or disable one of them"
        )


class UnknownComponentError(RegistryError, LookupError):
    """No installed plugin provides the requested semantic ID."""

    def __init__(
        self,
        component_id: str,
        *,
        suggestions: Sequence[str] = (),
        known_ids: Sequence[str] = (),
        provided_by: str | None = None,
        provider_installed: bool = False,
    ) -> None:
        self.component_id = component_id
        self.suggestions = tuple(suggestions)
        self.known_ids = tuple(known_ids)
        self.provided_by = provided_by
        if provided_by and provider_installed:
            message = (
                f"{component_id} is provided by {provided_by}, which is installed but did not register it "
                "(see mosaic plugins list for its error)"
            )
        elif provided_by:
            message = f"{component_id} is provided by {provided_by} — {install_hint(provided_by)}"
        else:
            message = f"unknown component {component_id!r}"
            if self.suggestions:
                message += f"; did you mean {', '.join(self.suggestions)}?"
            if self.known_ids:
                message += f" (known: {', '.join(self.known_ids)})"
            else:
                message += " (no component of that kind is installed)"
        super().__init__(message)


def install_hint(distribution: str, extra: str = "") -> str:
    """How to install a MOSAIC ``distribution`` (with ``extra``), in both forms a user may need:
    from a package index, and from a checkout of the MOSAIC repository (``packages/<distribution>``)."""
    requirement = f"{distribution}[{extra}]" if extra else distribution
    quote = "'" if extra else ""  # a shell would expand the brackets
    return (f"pip install {quote}{requirement}{quote} (from a package index), or "
            f"pip install {quote}./packages/{requirement}{quote} (from a MOSAIC checkout)")


# --- events ---------------------------------------------------------------------------------------


class EventError(MosaicError):
    """Base class of event envelope, codec and bus errors."""


class EventValidationError(EventError, ValueError):
    """An event envelope (or its JSON form) is invalid; names the field and the value."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"event field {field!r}: {message}")


class EventDecodeError(EventError, ValueError):
    """Bytes or token ids could not be decoded into an event; gives the position."""

    def __init__(self, message: str, *, position: int | None = None) -> None:
        self.position = position
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"cannot decode event{where}: {message}")


class BusFullError(EventError):
    """The event bus is at capacity and its policy is to reject new events."""


# --- models, training and checkpoints -------------------------------------------------------------


class ModelError(MosaicError):
    """A model was configured or called inconsistently (shapes, missing state)."""


class DataError(MosaicError):
    """A dataset cannot produce what its configuration asks for."""


class ObjectiveError(MosaicError):
    """An objective term is enabled but the tensors it needs are missing or malformed."""


class CheckpointError(MosaicError):
    """A checkpoint is missing, corrupt, or does not match the model it is loaded into."""


class TrainingError(MosaicError):
    """Training had to stop (non-finite loss, diverged run); the last good checkpoint is kept."""


class RunDirectoryError(MosaicError):
    """A run directory cannot be created, written or read back (full disk, no permission, a torn
    file, another process holding it)."""


class RunLockedError(RunDirectoryError):
    """Another live process holds the run directory's lock."""


class NotPlainFileError(MosaicError):
    """A file the toolkit opens in place (a log, a lock) is a symbolic link, a FIFO or another
    non-regular file, or cannot be opened (:func:`mosaic.core.atomic.open_plain_file`)."""


# --- runtime and tools ----------------------------------------------------------------------------


class RuntimeStateError(MosaicError):
    """A runtime session or its saved state is inconsistent."""


class ToolError(MosaicError):
    """A tool definition, approval or call is invalid."""


class SandboxError(ToolError):
    """The sandbox cannot run a tool safely (a required layer is unavailable) or the tool broke out
    of its limits."""


class AuditError(MosaicError):
    """An audit log failed verification or could not be appended safely."""
