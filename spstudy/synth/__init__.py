"""Synthetic NCL social prescribing extracts with a known planted effect.

The generator makes a registered population for the 107 NCL wards from real reference data
(Census 2021 residents, sex, ethnic group and English proficiency; ONS mid-2020 ages; IMD 2025;
GP practice list sizes), simulates GP appointments and A&E attendances with over-dispersion,
frequent attenders and transient crises, social prescribing referrals at the volumes the boroughs
report (NCL review 2024) with planted under-referral of some groups, and a KNOWN effect of being seen
by a link worker on GP use, A&E use and wellbeing. It writes the five extract tables of the data
contract (:mod:`spstudy.inputs.contract`) and a truth file that analyses never read.

Every modelling choice, number and source is in ``parameters/synth.yaml`` (validated on load) and
``docs/synthetic_data.md``. Key properties:

* **Deterministic**: the same seed, scale, pool fraction and parameter file give byte-identical files.
  Random numbers come from :class:`numpy.random.SeedSequence` streams keyed by (seed, stream, block)
  over fixed blocks of ``output.block_persons`` persons, so chunking never changes the results.
* **Absolute volumes**: the referral hazard is scaled per service (two passes over the population)
  so the expected number of referrals is ``annual_referrals x scale`` whatever ``pool_fraction`` is.
* **Sample design**: every referred person is written, plus a Bernoulli sample of the non-referred
  registered population with inclusion probability ``pool_fraction`` (weight ``1 / pool_fraction``).
* **Bounded memory**: with ``chunk_persons`` the tables are written as folders of Parquet parts.

Public: :func:`generate`, :func:`load_synth_params`, :func:`main` (CLI ``spstudy synth``).
"""


from spstudy.synth.config import SynthParams, default_params_path, load_synth_params
from spstudy.synth.generator import generate, main

__all__ = ["generate", "load_synth_params", "main", "SynthParams", "default_params_path"]
