"""A tokenizer's chat template rendered without transformers, the way ``apply_chat_template`` renders it.

Same jinja2 set-up as transformers' ``_compile_jinja_template``: a sandboxed environment with
``trim_blocks`` and ``lstrip_blocks``, loop controls, ``raise_exception``, ``strftime_now`` and a
``tojson`` that does not escape HTML; the tokenizer's special tokens (``bos_token``, ``eos_token``…)
are template variables, and ``add_generation_prompt`` is on (the server always asks for a reply).
A test holds the result to transformers' own ``apply_chat_template`` on the same template.

    >>> ChatTemplate("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>", {}).render(
    ...     [{"role": "user", "content": "hi"}])
    '<user>hi<assistant>'
"""

from __future__ import annotations

import json
from datetime import datetime

from torch2ort.errors import BundleError, ProtocolError, describe


class ChatTemplate:
    def __init__(self, source: str, special_tokens: dict[str, str]) -> None:
        try:
            import jinja2
            import jinja2.ext
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError:  # pragma: no cover - depends on the install
            raise BundleError("chat templates need jinja2: pip install 'torch2ort[serve]'") from None

        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
            return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self.special_tokens = {k: v for k, v in special_tokens.items() if isinstance(v, str)}
        try:
            self.template = env.from_string(source)
        except jinja2.TemplateError as exc:
            raise BundleError(f"the bundle's chat template does not compile: {describe(exc)}") from None
        self._errors = (jinja2.TemplateError, TypeError, ValueError, AttributeError, KeyError, IndexError)

    def render(self, messages: list[dict]) -> str:
        """The prompt text for ``messages`` (``[{"role", "content"}, …]``), ready for the reply."""
        try:
            return self.template.render(messages=messages, add_generation_prompt=True, **self.special_tokens)
        except self._errors as exc:  # the template refused these messages (raise_exception) or failed on them
            raise ProtocolError(f"the chat template refused the messages: {describe(exc)}") from None


__all__ = ["ChatTemplate"]
