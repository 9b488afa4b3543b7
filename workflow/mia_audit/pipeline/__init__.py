"""The workflow around the stages: the plan of targets and paths (:mod:`.plan`), the checks
before any job (:mod:`.checks`), cluster resources (:mod:`.resources`), what the rules ask of
the plan (:mod:`.rules`), the scripts' logging and failures (:mod:`.runtime`), one run per
results folder (:mod:`.runlock`) and the site profile (:mod:`.site_profile`).
"""
