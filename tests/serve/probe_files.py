"""Probes for issue 26 (encoded files through the server): corrupt files, an image decompression bomb,
``--max-file-mb`` checked before decoding (JSON base64 and the binary extension), the decode deadline
(``--decode-timeout-s``), and health staying live while large files decode in the worker threads.
Each sends real HTTP to a real `torch2ort serve` process (the image bundle's ``image_file`` input)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import zlib
from collections.abc import Callable

from serve.probe_bodies import _health_while
from serve.probes import INFER, Target, binary_body, expect, request

Probe = Callable[[Target], "str | None"]


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    """A PNG of zeros: a few KB on the wire, width x height pixels once decoded."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (width, height)).save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header (IHDR, with a valid CRC) declares ``width`` x ``height``: what a
    decompression bomb's header says, without building the bomb here."""
    data = bytearray(_png(1, 1))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def _json_files(files: list[bytes]) -> bytes:
    return json.dumps({"inputs": [{"name": "image_file", "datatype": "BYTES", "shape": [len(files)],
                                   "data": [base64.b64encode(f).decode() for f in files]}]}).encode()


def _binary_files(files: list[bytes]) -> tuple[bytes, dict]:
    blob = b"".join(len(f).to_bytes(4, "little") + f for f in files)
    spec = {"name": "image_file", "datatype": "BYTES", "shape": [len(files)],
            "parameters": {"binary_data_size": len(blob)}}
    return binary_body(spec, blob)


def _one_line_400(resp: tuple[int, dict, bytes], needle: str) -> str | None:
    problem = expect(resp, 400)
    if problem:
        return problem
    message = json.loads(resp[2]).get("error", "")
    if needle not in message or "\n" in message:
        return f"the error is not one line naming {needle!r}: {message[:160]!r}"
    return None


def corrupt_image(t: Target) -> str | None:
    """A PNG signature followed by junk: 400, one line, over JSON and the binary extension."""
    junk = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    return (_one_line_400(request(t.url, "POST", INFER, _json_files([junk])), "not a readable image")
            or _one_line_400(request(t.url, "POST", INFER, *_binary_files([junk])), "not a readable image"))


def pixel_bomb(t: Target) -> str | None:
    """A PNG whose header declares 100 MP is refused from its header (the 40 MP cap), never decoded."""
    start = time.perf_counter()
    resp = request(t.url, "POST", INFER, *_binary_files([_bomb_png(10_000, 10_000)]))
    took = time.perf_counter() - start
    return _one_line_400(resp, "over the limit of 40,000,000") or (
        f"the bomb took {took:.1f} s to refuse: it was decoded" if took > 2 else None)


def not_base64(t: Target) -> str | None:
    body = json.dumps({"inputs": [{"name": "image_file", "datatype": "BYTES", "shape": [1],
                                   "data": ["%%% not base64 %%%"]}]}).encode()
    return _one_line_400(request(t.url, "POST", INFER, body), "base64")


def large_images_keep_health_live(t: Target) -> str | None:
    """Four requests of two 36 MP PNGs each (decoded, converted to RGB and resized in the worker threads;
    about 2 s of decoding in all): /v2/health/live answers in under 1 s throughout, and every request gets
    its 200."""
    body, headers = _binary_files([_png(6000, 6000, "L")] * 2)
    answers: list[int] = []

    def send() -> tuple:
        threads = [threading.Thread(target=lambda: answers.append(request(t.url, "POST", INFER, body, headers,
                                                                           timeout=120)[0])) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(180)
        return (200 if answers == [200] * 4 else 500, {}, str(answers).encode())

    return _health_while(t, send, 200)


def file_limit_and_deadline(t: Target) -> str | None:
    """A sibling with ``--max-file-mb 0.05 --decode-timeout-s 0.3``: a 60 KB file is a 413 before any
    decoding (JSON base64 and binary alike), a small one is answered, and two 36 MP images (40 KB on the
    wire) that take longer than the deadline to decode are a 503 that comes back promptly."""
    s = t.sibling([t.bundles[0]], ["--max-file-mb", "0.05", "--decode-timeout-s", "0.3"], "files-sibling.log")
    try:
        big = b"\x89PNG\r\n\x1a\n" + bytes(60_000)
        for resp in (request(s.url, "POST", INFER, _json_files([big])),
                     request(s.url, "POST", INFER, *_binary_files([big]))):
            problem = expect(resp, 413)
            if problem or "--max-file-mb" not in json.loads(resp[2])["error"]:
                return f"a 60 KB file over --max-file-mb 0.05: {problem or resp[2][:120]!r}"
        request(s.url, "POST", INFER, *_binary_files([_png(40, 30)]))  # the first one imports Pillow
        small = request(s.url, "POST", INFER, *_binary_files([_png(40, 30)]))
        if small[0] != 200:
            return f"a small image got {small[0]}: {small[2][:120]!r}"
        start = time.perf_counter()
        slow = request(s.url, "POST", INFER, *_binary_files([_png(6000, 6000, "L")] * 2))
        took = time.perf_counter() - start
        if slow[0] != 503 or "--decode-timeout-s" not in json.loads(slow[2]).get("error", ""):
            return f"an image decoding past the deadline got {slow[0]}: {slow[2][:120]!r}"
        if took > 1.3:
            return f"the deadline's 503 took {took:.2f} s to come back"
        return None
    finally:
        s.stop()


FAMILIES: dict[str, dict[str, Probe]] = {"encoded files (26)": {
    "corrupt-image": corrupt_image, "pixel-bomb": pixel_bomb, "not-base64": not_base64,
    "large-images-health": large_images_keep_health_live, "file-limit-and-deadline": file_limit_and_deadline}}
