"""A value that must never be shown: repr, str, format, pickle and JSON all refuse it."""

from __future__ import annotations


class Secret:
    """Holds a credential. Only ``reveal()`` gives the value, and only the code
    that puts it on the wire (the API client, the OCI check) should call it."""

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str | Secret):
        if isinstance(value, Secret):
            value = value.reveal()
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        return self._value

    def __setattr__(self, name, value):  # immutable
        raise AttributeError("Secret is immutable")

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        import hmac  # here, not at the top: it loads OpenSSL (~4 ms) that validate never needs

        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):
        raise TypeError("a Secret cannot be pickled")

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self
