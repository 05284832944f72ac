"""A small stand-in for @dataclass: fields from class annotations, defaults from class values.

Why not dataclasses: importing it pulls in `inspect`, about 10 ms, and every CLI call is a new
process whose start-up users feel. This covers what we use: keyword or positional
construction, defaults (a dict or list default is copied per instance), repr and equality.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms to import; annotations here are never evaluated
if TYPE_CHECKING:
    from typing import Any, ClassVar


class Record:
    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}
    _field_set: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            for name, kind in vars(klass).get("__annotations__", {}).items():
                if "ClassVar" not in str(kind) and name not in names:
                    names.append(name)
        cls._fields = tuple(names)
        cls._defaults = {n: getattr(cls, n) for n in names if hasattr(cls, n)}
        cls._field_set = frozenset(names)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if not args and kwargs.keys() == self._field_set:
            # Every field given by name (a bulk enqueue builds 100,000 of these): nothing
            # to match up or default.
            self.__dict__.update(kwargs)
            return
        if len(args) > len(self._fields):
            raise TypeError(f"{type(self).__name__} takes at most {len(self._fields)} values")
        for name, value in zip(self._fields, args, strict=False):
            if name in kwargs:
                raise TypeError(f"{type(self).__name__} got {name!r} twice")
            kwargs[name] = value
        for name in self._fields:
            if name in kwargs:
                value = kwargs.pop(name)
            elif name in self._defaults:
                value = self._defaults[name]
                if isinstance(value, dict | list):
                    value = value.copy()
            else:
                raise TypeError(f"{type(self).__name__} needs {name!r}")
            setattr(self, name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__} has no field {next(iter(kwargs))!r}")

    @classmethod
    def trusted(cls, fields: dict[str, Any]):
        """An instance holding `fields` as they are: every field, nothing checked or copied.
        For hot paths that build 100,000 of them from values they have just checked."""
        obj = object.__new__(cls)
        obj.__dict__ = fields
        return obj

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._fields}

    def replace(self, **changes: Any):
        """A copy with some fields changed."""
        return type(self)(**{**self.fields(), **changes})

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.fields().items())
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.fields() == other.fields()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]
