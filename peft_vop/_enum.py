"""Adding a member to an existing `enum.Enum`, which Python offers no public way to do.

peft dispatches on `PeftType`, a closed enum: `register_peft_method` only accepts names that are already members,
and every `PeftConfig`/`PeftModel.from_pretrained` path looks the type up in it. `extend_enum` adds a member the way
`EnumType.__new__` itself does for each member: create the member object, give it its `_name_`/`_value_`, and enter
it in the class's three lookup tables (`_member_map_` for `E["NAME"]`, `_value2member_map_` for `E(value)`,
`_member_names_` for iteration) plus the class attribute. These tables have existed with the same meaning from
Python 3.6 to 3.13; `_sort_order_` is only read on 3.12+ and is harmless before. The function is idempotent.

This module imports only the standard library, so the tests run it as it is on other Python versions.
"""

from __future__ import annotations

import enum


def extend_enum(enum_class: type[enum.Enum], name: str, value: object) -> enum.Enum:
    """Add the member `name = value` to `enum_class` (if it is not there yet) and return it."""
    if name in enum_class.__members__:
        return enum_class[name]
    base_type = enum_class._member_type_
    member = object.__new__(enum_class) if base_type is object else base_type.__new__(enum_class, value)
    member._name_ = name
    member._value_ = value
    member.__objclass__ = enum_class
    member._sort_order_ = len(enum_class._member_names_)
    enum_class._member_map_[name] = member
    enum_class._value2member_map_[value] = member
    enum_class._member_names_.append(name)
    # `EnumType.__setattr__` refuses to rebind member names; `type.__setattr__` installs the attribute directly.
    type.__setattr__(enum_class, name, member)
    return member
