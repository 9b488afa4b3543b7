"""Stage 4, query: every target model on every record, into the confidence cube.

The membership signal φ (:mod:`.membership_signal`), the cube (:mod:`.cube`), one shard's
query (:mod:`.shard`) and the inputs of a partial-access attacker (:mod:`.partial_access`).
"""
