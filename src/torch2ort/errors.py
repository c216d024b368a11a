"""One exception hierarchy for torch2ort; the CLI maps each class to an exit code.

    Torch2OrtError                    exit 2 unless a subclass says otherwise
    ├── UsageError                    bad invocation or bad input (exit 2)
    │   ├── SpecError                 an input spec that does not parse or does not fit
    │   ├── SourceError               MODEL cannot be found, imported or built
    │   ├── CheckpointError           a checkpoint that is unsafe, unreadable or does not match
    │   ├── SampleError               a samples file that is missing or does not match the spec
    │   └── OutputExistsError         refusing to overwrite something without --force
    ├── BundleError                   a bundle that is invalid, tampered with or incomplete (exit 2)
    │   └── PredictInputError         predict() got the wrong names, shapes or dtypes (exit 2)
    ├── ExportError                   both exporters failed, or the ONNX file is invalid (exit 3)
    └── ParityError                   outputs outside tolerance (exit 1)

Third-party errors (torch.export, the TorchScript exporter, onnx.checker, ONNX Runtime) are
translated where they enter, so a user sees one line that says what was wrong and how to fix it.
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


class OutputExistsError(UsageError):
    pass


class BundleError(Torch2OrtError):
    exit_code = 2


class PredictInputError(BundleError):
    pass


class ExportError(Torch2OrtError):
    exit_code = 3


class ParityError(Torch2OrtError):
    exit_code = 1


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> str:
    """Message for a registry lookup failure, listing the valid names."""
    return f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}"
