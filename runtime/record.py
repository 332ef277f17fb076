"""Record: a plain data class without code generation.

dataclasses costs ~30 ms per `create` here (importing inspect, then compiling methods for
each class), and `create` is on the engines' path. Fields are the class annotations in
order; a class attribute of the same name is the default (never mutate shared defaults).
"""

from __future__ import annotations


class Record:
    _fields: tuple[str, ...] = ()

    def __init_subclass__(cls) -> None:
        own = tuple(cls.__dict__.get("__annotations__", {}))
        cls._fields = tuple(f for f in cls._fields if f not in own) + own

    def __init__(self, *args: object, **kw: object) -> None:
        if len(args) > len(self._fields):
            raise TypeError(f"{type(self).__name__}: too many arguments")
        for name, value in zip(self._fields, args, strict=False):
            self.__dict__[name] = value
        for name, value in kw.items():
            if name not in self._fields or name in self.__dict__:
                raise TypeError(f"{type(self).__name__}: bad or repeated field {name!r}")
            self.__dict__[name] = value
        for name in self._fields:
            if name not in self.__dict__:
                if not hasattr(type(self), name):
                    raise TypeError(f"{type(self).__name__}: missing field {name!r}")
                self.__dict__[name] = getattr(type(self), name)

    def replace(self, **changes: object) -> Record:
        """A copy with some fields changed (dataclasses.replace)."""
        return type(self)(**{**{f: self.__dict__[f] for f in self._fields}, **changes})

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={self.__dict__[f]!r}" for f in self._fields)
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(self.__dict__[f] == other.__dict__[f] for f in self._fields)

    __hash__ = None  # type: ignore[assignment]
