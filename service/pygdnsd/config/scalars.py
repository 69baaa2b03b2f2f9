"""Typed readings of vscf scalars, with gdnsd's exact acceptance rules.

gdnsd reads string options as C strings (an embedded NUL ends the value) but
refuses a NUL inside an integer or boolean. Integers go through ``strtoul`` with base 0 (so ``0x10``, ``010``, ``+5`` and
leading whitespace are accepted, and a negative number wraps modulo 2**64).
These functions reproduce that so the same configs pass or fail.
"""

from __future__ import annotations

from pygdnsd.config.vscf import scalar_bytes

C_SPACE = " \t\n\v\f\r"
ULONG_MAX = 2**64 - 1
HEX_DIGITS = "0123456789abcdefABCDEF"


def c_string(text: str) -> str:
    """``text`` as C code sees it: cut at the first NUL."""
    return text.split("\0", 1)[0]


def c_bytes(text: str) -> bytes:
    """The raw bytes of a scalar up to the first NUL."""
    return scalar_bytes(c_string(text))


def strtoul(text: str) -> int | None:
    """The value of a whole-string ``strtoul(text, &end, 0)``, or None when it is not one."""
    if "\0" in text:
        return None
    s = text.lstrip(C_SPACE)
    negative = False
    if s[:1] in ("+", "-"):
        negative = s[0] == "-"
        s = s[1:]
    if s[:2].lower() == "0x" and s[2:3] != "" and s[2] in HEX_DIGITS:
        base, digits = 16, s[2:]
    elif s.startswith("0"):
        base, digits = 8, s
    else:
        base, digits = 10, s
    if not digits or not digits.isascii() or not all(_digit_ok(c, base) for c in digits):
        return None
    value = int(digits, base)
    if value > ULONG_MAX:
        return None
    return (-value) % (ULONG_MAX + 1) if negative else value


def _digit_ok(char: str, base: int) -> bool:
    if base == 16:
        return char in HEX_DIGITS
    return "0" <= char <= chr(ord("0") + base - 1)


def c_bool(text: str) -> bool | None:
    """True/False for "true"/"false" in any ASCII case, else None."""
    s = text
    if "\0" in s or not s.isascii():
        return None
    lowered = s.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    return None
