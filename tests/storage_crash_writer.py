"""Self-play written to a local directory by a BufferSink, printing the durable
sequence as it grows; run by test_storage_crash.py, which kills it.

    python storage_crash_writer.py FORMAT DESTINATION STEPS [RECORD.npz]

STEPS 0 runs until killed. RECORD.npz receives every experience the process
produced (read by a second cursor), to compare the stored ones with.
"""

from __future__ import annotations

import sys
import time

import generals_rl
import numpy as np
from generals_rl.bots import RandomBot
from generals_rl.storage import BufferSink, open_writer

ENVS, SEED, MAX_TICKS = 8, 3, 60


def main(fmt: str, destination: str, steps: int, record: str | None) -> None:
    buffer = generals_rl.ExperienceBuffer(capacity=20_000, policy="block")
    everything = buffer.cursor() if record else None
    produced = []
    env = generals_rl.VecEnv(ENVS, buffer=buffer, max_ticks=MAX_TICKS, seed=SEED)
    bot = RandomBot(SEED)
    writer = open_writer(fmt, destination, max_experiences=1_500, chunk_size=300)
    print("resume", writer.resume_sequence, flush=True)
    sink = BufferSink(buffer, writer, batch_size=300, poll_interval=0.01).start()
    env.reset()
    reported = None
    step = 0
    while steps == 0 or step < steps:
        env.step(bot.act(env))
        step += 1
        if everything is not None:
            produced.append(everything.read_raw(1 << 20))
        if sink.durable_sequence != reported:
            reported = sink.durable_sequence
            print("durable", reported, flush=True)
        if steps == 0:
            time.sleep(0.002)
    sink.stop()
    if record:
        np.savez(record, **generals_rl.RawBatch.concat(produced).to_dict())
    print("durable", sink.durable_sequence, flush=True)
    print("done", buffer.head, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
