"""The `PeftType.VOP` member that peft's method tables are keyed by (the registration itself is in `__init__`).

peft dispatches on `PeftType`, a closed `enum.Enum`: `register_peft_method` only accepts names that are already
members, and every `PeftConfig`/`PeftModel.from_pretrained` path looks the type up in it. Python offers no public
way to add a member to an existing enum, so we add one the way `EnumType.__new__` itself does for each member:
create the member object, give it its `_name_`/`_value_`, and enter it in the class's three lookup tables
(`_member_map_` for `PeftType["VOP"]`, `_value2member_map_` for `PeftType("VOP")`, `_member_names_` for iteration)
plus the class attribute (`PeftType.VOP`). These tables have existed with the same meaning from Python 3.6 to 3.13;
the `_sort_order_` attribute is only read on 3.12+ and is harmless before. The function is idempotent, so importing
`peft_vop` twice (or reloading it) is harmless.
"""

from __future__ import annotations

import enum

from peft.utils import PeftType


VOP_NAME = "vop"


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


VOP_PEFT_TYPE = extend_enum(PeftType, VOP_NAME.upper(), VOP_NAME.upper())


def forget_earlier_registration() -> None:
    """Drop VoP's entries from peft's method tables, so that a reloaded `peft_vop` can register its new classes
    (`register_peft_method` refuses a name that is already taken)."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    for mapping in (PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING):
        mapping.pop(VOP_PEFT_TYPE, None)
