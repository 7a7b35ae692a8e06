"""Networks the zoo builds on: backbones with conditioner hooks (``backbones``, ``conditioners``)
and task models that own their losses."""
