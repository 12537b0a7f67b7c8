"""Coverage and reports: how many of the warned people each warning reached, held to the plan's target.

- `model`: the computation, pure (evidence -> coverage by area and channel, at any time);
- `evidence`: the evidence of reach read from the database for one warning;
- `snapshots`: the figures stored while a warning is live, at its checkpoints and at the end;
- `escalation`: the ladder applied when a checkpoint finds a warning below the target;
- `report`: the plan's yearly indicators (coverage per district, satisfaction).
"""
