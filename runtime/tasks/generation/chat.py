"""Chat messages to a prompt: the bundle's chat template (a Jinja template, as transformers keeps
in tokenizer_config.json), rendered in Jinja's sandbox (a bundle's template is data, never code
with access to the process).

Export takes the template from the checkpoint's tokenizer_config.json when it has one; GPT-2
checkpoints have none, so export writes DEFAULT_CHAT_TEMPLATE (or the one its --chat-template
names) into manifest.tokenizer.chat_template and tokenizer_config.json. A bundle exported before
templates existed gets the default. Jinja2 comes with the serve extra.
"""
from __future__ import annotations

from typing import Any, Sequence

from reelrt.runtime.bundle.manifest import Manifest
from reelrt.runtime.errors import BackendUnavailableError, BundleError, InputError

# A plain transcript for models never trained on chat: a system message first as it is, then
# "Role: content" lines, and the assistant's turn opened. Its answer ends at end-of-text or at
# the next "\nUser:" (serve's chat route stops there by default).
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% else %}{{ message['role'] | capitalize }}: {{ message['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}")
DEFAULT_CHAT_STOP = "\nUser:"
ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_TEMPLATE_CHARS = 64 * 1024


def chat_template(manifest: Manifest) -> str:
    """The bundle's template, or the default; BundleError for one that is not a string."""
    template = manifest.tokenizer.get("chat_template", DEFAULT_CHAT_TEMPLATE)
    if not isinstance(template, str) or not template or len(template) > MAX_TEMPLATE_CHARS:
        raise BundleError(f"manifest.tokenizer.chat_template must be a non-empty string of at most"
                          f" {MAX_TEMPLATE_CHARS} characters")
    return template


def check_template(template: str) -> str:
    """Compile a template once (export refuses one Jinja cannot read); return it."""
    _compile(template)
    return template


def render(template: str, messages: Sequence[dict[str, Any]], *, bos_token: str = "", eos_token: str = "",
           add_generation_prompt: bool = True) -> str:
    """The prompt of `messages` ([{"role": ..., "content": str}]) under `template`."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise InputError("messages must be a non-empty list of {role, content} objects")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise InputError(f"messages[{i}] must have a role among {', '.join(ROLES)}")
        if not isinstance(m.get("content"), str):
            raise InputError(f"messages[{i}].content must be a string (text parts are joined by the server)")
    try:
        return _compile(template).render(messages=list(messages), bos_token=bos_token, eos_token=eos_token,
                                         add_generation_prompt=add_generation_prompt)
    except InputError:
        raise
    except Exception as e:  # a template's own raise_exception, or one that fails on these messages
        raise InputError(f"the chat template refused these messages: {e}") from None


def _compile(template: str):
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise BackendUnavailableError("chat templates need Jinja2: pip install 'reelrt[serve]'") from None
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message: str):  # what transformers' templates call to refuse a conversation
        raise InputError(message)
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template)
    except Exception as e:
        raise BundleError(f"the chat template is not a Jinja template: {e}") from None
