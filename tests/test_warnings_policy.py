"""The suite turns deprecations raised from glmtune's own calls into errors (pyproject filterwarnings)."""

from __future__ import annotations

import warnings

import pytest


@pytest.mark.parametrize("category", [FutureWarning, DeprecationWarning])
def test_a_deprecation_attributed_to_glmtune_fails(category):
    with pytest.raises(category):
        warnings.warn_explicit("`past_key_values` is deprecated", category, "prefix.py", 1,
                               module="glmtune.models.glm_mapping.prefix")


def test_a_library_internal_deprecation_stays_a_warning():
    with pytest.warns(FutureWarning):
        warnings.warn_explicit("internal rename", FutureWarning, "peft_model.py", 1, module="peft.peft_model")
