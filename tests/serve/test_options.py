"""Limits and ServeOptions check themselves: the library refuses what `torch2ort serve` refuses, in one line."""

from __future__ import annotations

import math

import pytest

from torch2ort.errors import UsageError
from torch2ort.serve import Limits, ServeOptions, serve

BAD_NUMBERS = [math.nan, math.inf, -math.inf, 0, -1, 10**12]


@pytest.mark.parametrize("value", BAD_NUMBERS)
@pytest.mark.parametrize("name", ["max_batch", "max_delay_ms", "queue", "max_rows", "max_text_chars", "max_file_mb",
                                  "decode_timeout_s", "max_prompt_tokens", "max_new_tokens", "generate_timeout_s"])
def test_limits_refuse_bad_numbers(name, value):
    if name == "max_delay_ms" and value == 0:
        assert Limits(max_delay_ms=0).max_delay_ms == 0  # no wait at all is a valid choice
        return
    with pytest.raises(UsageError) as err:
        Limits(**{name: value})
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{name} (--{name.replace('_', '-')}) ")


@pytest.mark.parametrize("value", BAD_NUMBERS)
@pytest.mark.parametrize("name", ["port", "grpc_port", "max_body_mb", "read_timeout_s", "threads", "graceful_s"])
def test_serve_options_refuse_bad_numbers(name, value):
    if name == "graceful_s" and value == 0:
        assert ServeOptions(graceful_s=0).graceful_s == 0  # stop at once
        return
    with pytest.raises(UsageError, match=rf"^{name} \(--{name.replace('_', '-')}\) "):
        ServeOptions(**{name: value})


@pytest.mark.parametrize("name, value", [("max_batch", 2.5), ("queue", "8"), ("max_rows", True), ("port", 80.0),
                                         ("max_delay_ms", "5"), ("max_body_mb", None)])
def test_wrong_types_are_usage_errors_too(name, value):
    with pytest.raises(UsageError, match=name):
        (Limits if name in Limits.RANGES else ServeOptions)(**{name: value})


def test_the_edges_of_each_range_are_accepted():
    low = Limits(max_batch=1, max_delay_ms=0, queue=1, max_rows=1, max_text_chars=1)
    high = Limits(max_batch=2**20, max_delay_ms=60_000, queue=2**20, max_rows=2**31, max_text_chars=2**31)
    assert low.caps.max_rows == 1 and high.caps.max_text_chars == 2**31
    files = Limits(max_file_mb=0.5, decode_timeout_s=0.01).caps
    assert files.max_file_bytes == 2**19 and files.decode_timeout_s == 0.01 and not files.files
    assert ServeOptions(port=65535, grpc_port=1, max_body_mb=1e-3, read_timeout_s=3600, threads=1024).threads == 1024
    assert ServeOptions(grpc_port=None, threads=None).max_body_bytes == 64 * 2**20


def test_grpc_port_log_level_and_limits_are_checked():
    with pytest.raises(UsageError, match="is the HTTP port"):
        ServeOptions(port=9000, grpc_port=9000)
    with pytest.raises(UsageError, match="log_level .*debug, info"):
        ServeOptions(log_level="loud")
    with pytest.raises(UsageError, match="limits must be"):
        ServeOptions(limits={"max_batch": 4})


@pytest.mark.parametrize("kwargs", [{"max_delay_ms": math.inf}, {"queue": 0}, {"max_rows": -5},
                                    {"max_text_chars": 10**12}, {"max_batch": math.nan}])
def test_serve_from_python_refuses_bad_limits_before_loading(kwargs, tmp_path):
    # The bundle path does not exist: reaching the loader would be a BundleError, not a UsageError.
    with pytest.raises(UsageError, match=next(iter(kwargs))):
        serve([str(tmp_path / "missing")], limits=Limits(**kwargs))


@pytest.mark.parametrize("kwargs", [{"max_body_mb": math.nan}, {"read_timeout_s": math.inf}, {"port": 0},
                                    {"grpc_port": 70000}, {"threads": 0}, {"threads": -2}, {"port": 10**9}])
def test_serve_from_python_refuses_bad_options_before_binding(kwargs, tmp_path):
    with pytest.raises(UsageError, match=next(iter(kwargs))):
        serve([str(tmp_path / "missing")], **kwargs)


@pytest.mark.parametrize("argv, option", [(["--max-delay-ms", "nan"], "max_delay_ms"), (["--queue", "0"], "queue"),
                                          (["--threads", "0"], "threads"), (["--max-body-mb", "inf"], "max_body_mb"),
                                          (["--port", "-1"], "port"), (["--grpc-port", "99999"], "grpc_port")])
def test_the_cli_reports_the_library_check(argv, option, tmp_path, capsys):
    from torch2ort.cli import main

    assert main(["serve", str(tmp_path / "missing"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and option in err, err
