"""Hypothesis for shared, noisy machines: timing is not what the property tests test.

A CI machine running other jobs can make input generation or one example slow; the
health check for slow generation and the per-example deadline would then fail a test
whose property holds. Both are off for every property test (a test may still set its
own settings on top).
"""

from hypothesis import HealthCheck, settings

settings.register_profile("caseloop", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("caseloop")
