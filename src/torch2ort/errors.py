"""One exception hierarchy for torch2ort; the CLI maps each class to an exit code.

    Torch2OrtError                    exit 2 unless a subclass says otherwise
    ├── UsageError                    bad invocation or bad input (exit 2)
    │   ├── SpecError                 an input spec that does not parse or does not fit
    │   ├── SourceError               MODEL cannot be found, imported or built
    │   ├── CheckpointError           a checkpoint that is unsafe, unreadable or does not match
    │   ├── SampleError               a samples file that is missing or does not match the spec
    │   ├── OutputExistsError         refusing to overwrite something without --force
    │   ├── ReferenceFailedError      the PyTorch model itself fails on a case: a bad input or a torch2ort bug
    │   └── PassError                 a pass asked for with options it does not take, or without data
    ├── BundleError                   a bundle that is invalid, tampered with or incomplete (exit 2)
    │   ├── PredictInputError         predict() got the wrong names, shapes or dtypes
    │   └── WireError                 an ONNX file whose protobuf bytes do not parse
    ├── ProtocolError                 a request the server refuses; ``status`` is its HTTP code
    ├── ExportError                   export or conversion failed, or the ONNX file is invalid (exit 3)
    │   ├── PassFailedError           a pass crashed inside its library (quantiser, fusion, slim)
    │   └── RunnerError               a backend could not run the model on a feed
    └── ParityError                   outputs outside tolerance (exit 1)

    Mismatch                          inside the runtime's type checker only: where and what, which the
                                      manifest and step checks turn into a one-line BundleError

Anything else reaching the CLI is a bug (exit 4). Third-party errors (torch.export, the TorchScript
exporter, onnx.checker, ONNX Runtime) are translated where they enter, with ``describe`` making
the one line a user sees.
"""

from __future__ import annotations


class Torch2OrtError(Exception):
    """Base class. ``exit_code`` is what the CLI returns for it."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def one_line(self) -> str:
        return " ".join(self.message.split())


class UsageError(Torch2OrtError):
    exit_code = 2


class SpecError(UsageError):
    pass


class SourceError(UsageError):
    pass


class CheckpointError(UsageError):
    pass


class SampleError(UsageError):
    pass


class ReferenceFailedError(UsageError):
    pass


class OutputExistsError(UsageError):
    pass


class PassError(UsageError):
    pass


class BundleError(Torch2OrtError):
    exit_code = 2


class PredictInputError(BundleError):
    pass


class WireError(BundleError):
    pass


class ProtocolError(Torch2OrtError):
    """A request the server refuses; ``status`` is the HTTP code (400 bad input, 404, 413, 503)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

    def __reduce__(self):  # raised in a parser process, re-raised in the server with its status
        return type(self), (str(self), self.status)


class ExportError(Torch2OrtError):
    exit_code = 3


class PassFailedError(ExportError):
    pass


class RunnerError(ExportError):
    """A backend refused or failed a feed; ``compare`` records it as a failed case."""


class ParityError(Torch2OrtError):
    exit_code = 1


def describe(exc: BaseException, limit: int = 300) -> str:
    """One line for any exception: our own message, else ``TypeName: first words`` of a library's."""
    if isinstance(exc, Torch2OrtError):
        return exc.one_line()
    text = one_line(str(exc), limit)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def one_line(text: str, limit: int = 300) -> str:
    """Whitespace (newlines included) collapsed, cut at ``limit`` characters."""
    return " ".join(text.split())[:limit]


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> str:
    """Message for a registry lookup failure, listing the valid names."""
    return f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}"


class Mismatch(Exception):  # a finding inside the type checker, not an error a user sees
    """Where (keys and indices into the checked value) and what is wrong there.

    ``kind``: ``type`` (``expected`` names the JSON types wanted, ``got`` the Python type found),
    ``required`` (a missing key), ``predicate`` (``text`` reads after the value's name:
    ``files.model.onnx must be a sha256 hex digest``) or ``value`` (anything else).
    """

    def __init__(self, text: str, kind: str = "value", path: tuple = (), expected: list[str] | None = None,
                 got: str | None = None):
        super().__init__(text)
        self.text, self.kind, self.path, self.expected, self.got = text, kind, path, expected, got

    def under(self, key) -> Mismatch:
        return Mismatch(self.text, self.kind, (key, *self.path), self.expected, self.got)

    def where(self) -> str:
        """``inputs[0].dtype``, ``files.model.onnx``: the path as one would write it."""
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out

    def describe(self) -> str:
        """One line: where, then what (the text cut short: a value can be huge)."""
        at, text = self.where(), self.text if len(self.text) < 200 else self.text[:200] + "..."
        if self.kind == "required":
            return text + (f" in {at}" if at else "")
        if self.kind == "predicate":
            return f"{at or 'the value'} {text}"
        return f"{at}: {text}" if at else text
