"""The `PeftType.VOP` member that peft's method tables are keyed by (the registration itself is in `__init__`).

peft dispatches on `PeftType`, a closed `enum.Enum`; `peft_vop._enum.extend_enum` adds the member (see there why
and how).
"""

from __future__ import annotations

from peft.utils import PeftType

from ._enum import extend_enum


VOP_NAME = "vop"
VOP_PEFT_TYPE = extend_enum(PeftType, VOP_NAME.upper(), VOP_NAME.upper())


def forget_earlier_registration() -> None:
    """Drop VoP's entries from peft's method tables, so that a reloaded `peft_vop` can register its new classes
    (`register_peft_method` refuses a name that is already taken)."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    for mapping in (PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING):
        mapping.pop(VOP_PEFT_TYPE, None)
