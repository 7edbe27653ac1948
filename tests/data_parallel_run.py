"""Run under `accelerate launch` by tests/test_data_parallel.py (one launch, so the processes start once).

argv[1]: a JSON list of jobs {"config": TrainConfig mapping, "stop_after_step": int or null, "batch_log": folder}.
Each job trains its run with $SDM_BATCH_LOG set to its folder; a job that stops after a step (as an interruption
would) is resumed at once by the next train() call, from its checkpoint on disk, as a new invocation would be.
"""

import json
import os
import sys

from sdmlib.config import TrainConfig
from sdmlib.train import train

if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        jobs = json.load(handle)
    for job in jobs:
        os.environ["SDM_BATCH_LOG"] = job["batch_log"]
        config = TrainConfig.from_mapping(job["config"])
        if job.get("stop_after_step") is not None:
            train(config, progress=False, stop_after_step=job["stop_after_step"])
        train(config, progress=False)
