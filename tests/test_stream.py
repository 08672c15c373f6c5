"""data.placement stream: worker processes read the same bytes as the store (wgan_jax.data.stream).

Worker start-up costs about half a second each, so the readers are shared per module. The
data is a folder of small PNG files (folder:PATH), one of them truncated at CORRUPT.
"""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image
import pytest

from wgan_jax.data import source, store as store_lib, stream
from wgan_jax.errors import DataError

NUM = 12
CORRUPT = 7  # index of the truncated file (files sort by name)
GOOD = np.array([i for i in range(NUM) if i != CORRUPT])
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  folder = tmp_path_factory.mktemp('stream_png')
  pixels = np.random.default_rng(0).integers(0, 256, (NUM, 6, 5, 3), dtype=np.uint8)
  for i in range(NUM):
    Image.fromarray(pixels[i]).save(folder / f'{i:02d}.png')
  with open(folder / f'{CORRUPT:02d}.png', 'rb') as f:
    head = f.read()
  (folder / f'{CORRUPT:02d}.png').write_bytes(head[:len(head) - 30])  # header intact
  return {'name': f'folder:{folder}', 'image_size': 0, 'channels': 0}


@pytest.fixture(scope='module')
def store(data):
  return store_lib.open_store(data)


@pytest.fixture(scope='module')
def readers(data, store):
  opened = {w: stream.StreamReader(data, workers=w, store=store) for w in (1, 2)}
  yield opened
  for reader in opened.values():
    reader.close()


def _assert_same(got, want):
  assert got[0].dtype == np.uint8 and got[1].dtype == np.int32
  np.testing.assert_array_equal(got[0], want[0])
  np.testing.assert_array_equal(got[1], want[1])


def test_split_chunks():
  assert stream.split_chunks(5, 2) == [(0, 3), (3, 5)]
  assert stream.split_chunks(1, 2) == [(0, 1)]
  assert stream.split_chunks(0, 2) == []
  assert stream.split_chunks(7, 3) == [(0, 3), (3, 5), (5, 7)]


@pytest.mark.parametrize('workers', [0, 1, 2])
def test_read_is_store_read_bit_for_bit(readers, data, store, workers):
  reader = readers[workers] if workers else stream.StreamReader(data, workers=0, store=store)
  indices = np.random.default_rng(workers).choice(GOOD, 9)  # repeats, any order
  _assert_same(reader.read(indices), store.read(indices))
  for few in ([GOOD[3]], []):  # fewer indices than workers: the idle worker gets nothing
    _assert_same(reader.read(np.array(few, np.int64)), store.read(np.array(few, np.int64)))


def test_worker_error_is_the_stores_one_line_data_error(readers, store):
  reader = readers[2]
  with pytest.raises(DataError) as caught:
    reader.read(np.array([0, 1, 2, CORRUPT, 3]))
  message = str(caught.value)
  assert '\n' not in message and f'{CORRUPT:02d}.png' in message
  with pytest.raises(DataError) as direct:
    store.read(np.array([CORRUPT]))
  assert message == str(direct.value)
  _assert_same(reader.read(GOOD), store.read(GOOD))  # the reader goes on


def test_prefetch_hit_and_miss(readers, store):
  reader = readers[2]
  assert reader.depth == 2
  first, second, third, other = GOOD[:5], GOOD[5:], GOOD[2:4], GOOD[::-1]
  for indices in (first, second, first, third):  # a repeat and one past the depth: ignored
    reader.prefetch(indices)
  assert len(reader._queue) == 2  # pylint: disable=protected-access
  _assert_same(reader.read(first), store.read(first))           # hits, in order
  _assert_same(reader.read(second), store.read(second))
  reader.prefetch(first)
  reader.prefetch(second)
  _assert_same(reader.read(other), store.read(other))           # miss: both dropped
  assert not reader._queue  # pylint: disable=protected-access
  reader.prefetch(np.array([CORRUPT]))                          # a dropped prefetch's error
  _assert_same(reader.read(second), store.read(second))         # goes with it
  reader.prefetch(third)
  reader.prefetch(np.array([CORRUPT]))
  _assert_same(reader.read(third), store.read(third))
  with pytest.raises(DataError):
    reader.read(np.array([CORRUPT]))


def test_stream_batches_equal_host_batches_with_prefetch(tmp_path):
  pixels = np.random.default_rng(1).integers(0, 256, (5, 4, 4, 1), dtype=np.uint8)
  for i in range(5):
    Image.fromarray(pixels[i, ..., 0]).save(tmp_path / f'{i}.png')
  data = {'name': f'folder:{tmp_path}', 'stream_workers': 2}
  streamed = source.ImageSource(dict(data, placement='stream'), seed=3)
  hosted = source.ImageSource(dict(data, placement='host'), seed=3)
  processes = [w.process for w in streamed._reader._workers]  # pylint: disable=protected-access
  try:
    # Same shape twice (prefetch hit, across an epoch), then a new shape (miss), then a
    # critic-schedule start (hit).
    for step, shape, start in [(0, (2, 3), None), (1, (2, 3), None), (2, (1, 3), 12),
                               (3, (1, 3), 15)]:
      got = streamed.batches(step, shape=shape, start=start)
      want = hosted.batches(step, shape=shape, start=start)
      assert got[0]['x'].shape == (*shape, 4, 4, 1)
      np.testing.assert_array_equal(got[0]['x'], want[0]['x'])
      np.testing.assert_array_equal(got[1], want[1])
  finally:
    streamed.close()
  assert len(processes) == 2 and all(p.exitcode == 0 for p in processes)


def test_dead_worker_is_one_line_data_error_and_close_reaps(data, store):
  reader = stream.StreamReader(data, workers=2, store=store)
  _assert_same(reader.read(GOOD), store.read(GOOD))
  processes = [w.process for w in reader._workers]  # pylint: disable=protected-access
  buffers = [b.name for w in reader._workers  # pylint: disable=protected-access
             for b in w.buffers if b]
  os.kill(processes[1].pid, signal.SIGKILL)
  for _ in range(2):  # and again: the reader stays broken, it does not hang
    with pytest.raises(DataError, match=r'worker 1 \(pid \d+\) .* died with exit code -9 '
                       r'\(SIGKILL\)') as caught:
      reader.read(GOOD)
    assert '\n' not in str(caught.value)
  reader.close()
  for process in processes:
    assert process.exitcode is not None
    with pytest.raises(ProcessLookupError):  # reaped: no zombie
      os.kill(process.pid, 0)
  for name in buffers:
    assert not os.path.exists(f'/dev/shm/{name.lstrip("/")}')
  reader.close()  # twice is fine


def test_workers_import_no_jax_and_stop_at_exit(tmp_path, data):
  """The data modules import no jax; a trainer whose main module imports jax starts workers
  that do not (no jaxlib mapped in them); a trainer that exits without close() stops them
  (no hang, even when weakref's exit hook predates multiprocessing's) and leaks no buffer."""
  script = tmp_path / 'trainer_main.py'
  script.write_text(textwrap.dedent(f"""
      import weakref
      weakref.finalize(weakref, print)  # weakref's exit hook before multiprocessing's
      import sys
      import numpy as np
      from wgan_jax.data import folder, images, source, store, stream
      assert 'jax' not in sys.modules, 'a data module imports jax'
      import jax
      if __name__ == '__main__':
        reader = stream.StreamReader({data!r}, workers=1)
        reader.read(np.array([0]))
        with open(f'/proc/{{reader._workers[0].process.pid}}/maps') as f:
          assert 'jaxlib' not in f.read(), 'the worker imported jax'
        reader.prefetch(np.array([1]))
        print('ok')
  """))
  done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                        cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), timeout=120, check=False)
  assert done.stdout.strip() == 'ok' and done.returncode == 0, done.stderr
  assert 'leaked' not in done.stderr, done.stderr
