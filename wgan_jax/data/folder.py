"""`data.name=folder:PATH`: a folder of PNG / JPEG / WebP images as a store.

Usage:

  python -m wgan_jax.main --config=configs/sngan.py --workdir=runs/faces \
      --config.data.name=folder:~/faces --config.data.image_size=64

reads every .png, .jpg, .jpeg and .webp file (any case) under ~/faces, subfolders too, in
sorted order of their relative paths. When PATH has two or more first-level subfolders that
hold images, each is a class (sorted names -> labels 0..C-1, e.g. PATH/cat/*, PATH/dog/*);
otherwise all images are one class (labels 0). Images of any sizes are resized to 64x64;
without data.image_size all images must have the same size, which is then kept (it may be
non-square). data.channels (0: the majority of the files) makes every image grey (1) or RGB
(3). What was ignored, converted or upscaled is said once, in one stderr line each.

Rules:

  layout       Names starting with '.' (.DS_Store, macOS ._x.jpg forks, .ipynb_checkpoints)
               are skipped; symlinked folders are followed (each real folder once). With class
               subfolders, images directly under PATH belong to no class and are ignored, with
               a warning that names one (torchvision's ImageFolder ignores them too). Subfolders
               without images are not classes.
  image_size   0: every image as it is (all must be the same size; the error names two that
               differ). S > 0: the centred square of side min(H, W) (offsets rounded down, as
               wgan_jax.data.images.center_crop), resized to S x S with Pillow BICUBIC, which
               is antialiased when downscaling: the same as resizing the short side to S and
               centre-cropping, without rounding the long side. An image that already is S x S
               is kept bit for bit; smaller ones are upscaled, with a warning.
  JPEG draft   A JPEG at least JPEG_DRAFT_GAP (3) times larger than S is decoded at 1/2, 1/4 or
               1/8 scale by libjpeg (PIL.Image.draft, still >= 3 S) before the bicubic resize:
               3-5x faster on large photos, within a few levels of a full decode (mean
               absolute difference about 0.3 of 255 on a 512x600 photo resized to 32-128).
  channels     grey = modes 1, L, LA, I, I;16*, F; colour = RGB, RGBA, P (palette), CMYK,
               YCbCr, ... data.channels=0 takes the majority (a tie is colour). Transparent
               pixels (RGBA, LA, palette transparency) are composited on white, as a viewer
               shows them (the colour stored under alpha 0 is arbitrary); 16-bit grey keeps its
               high byte. EXIF orientation is not applied: pixels are read as stored.
  errors       a missing folder, a folder without images, an image whose header cannot be read
               (found when the folder is scanned) or whose data is truncated or corrupt (found
               when it is read), mixed sizes without data.image_size: each a one-line DataError
               naming the file and the fix.

Scanning reads only headers (size and mode); the scan is cached in the process, keyed by the
folder and every file's (relative path, size, mtime), so `describe_folder` and `FolderStore`
scan once. A worker process (the stream placement) reopens the store and scans its own copy.

Shapes:
  N        image files used
  H W C    image_shape: (S, S, C) with data.image_size=S, else the images' (H, W, C)
  read(indices int [n]) -> (uint8 [n, H, W, C], int32 [n])
"""
import multiprocessing
import os
import sys
from typing import Mapping, NamedTuple

import numpy as np
from PIL import Image

from wgan_jax.data import store as store_lib
from wgan_jax.errors import ConfigError, DataError

IMAGE_EXTENSIONS = ('.jpeg', '.jpg', '.png', '.webp')
FORMATS = ('JPEG', 'PNG', 'WEBP')  # Pillow decoders tried, whatever the extension says
RESAMPLE = Image.Resampling.BICUBIC
JPEG_DRAFT_GAP = 3    # draft-decode a JPEG only while it stays >= this many times the target
BACKGROUND = 255      # white, under transparent pixels
GREY_MODES = frozenset({'1', 'L', 'LA', 'La', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F'})
ALPHA_MODES = frozenset({'RGBA', 'RGBa', 'LA', 'La', 'PA'})
_MAX_CACHED_SCANS = 8


class Scan(NamedTuple):
  """What the headers of a folder's images say, before any config is applied.

  Attributes:
    files: relative paths ('/'-separated) of the images used, sorted by path components.
    labels: int32 [N], the class of each file (zeros with one class).
    classes: sorted class folder names, () with one class.
    ignored: relative paths of images directly under PATH ignored because of class folders.
    sizes: int [N, 2], (width, height) of each file.
    modes: Pillow mode of each file.
  """
  files: tuple[str, ...]
  labels: np.ndarray
  classes: tuple[str, ...]
  ignored: tuple[str, ...]
  sizes: np.ndarray
  modes: tuple[str, ...]


class Plan(NamedTuple):
  """How the images of a scan become examples under config.data.

  Attributes:
    image_shape: (H, W, C) of every example.
    num_classes: C classes (1 without class folders).
    mode: 'L' or 'RGB', the Pillow mode every image is converted to.
    size: S of data.image_size, 0 to keep the images' own size.
    notes: warning lines (without 'warning: ') about ignored, converted, upscaled images.
  """
  image_shape: tuple[int, int, int]
  num_classes: int
  mode: str
  size: int
  notes: tuple[str, ...]


# How a converted mode is named in the conversion warning, after its Pillow name.
_MODE_NOTES = {'RGBA': ' (alpha composited on white)', 'LA': ' (alpha composited on white)',
               'PA': ' (palette, alpha composited on white)', 'P': ' (palette)',
               'I;16': ' (16-bit)', 'I;16B': ' (16-bit)', 'I': ' (32-bit)', '1': ' (1-bit)'}

_SCANS: dict[tuple, Scan] = {}
_WARNED: set[str] = set()


# ----------------------------------------------------------------------------- listing


def is_image_name(name: str) -> bool:
  """Whether a file name is read: a listed extension (any case), not hidden."""
  return not name.startswith('.') and name.lower().endswith(IMAGE_EXTENSIONS)


def _where(path: str) -> str:
  return f'folder:{path}'


def _walk(root: str, top: str, seen: set) -> list[tuple[tuple[str, ...], int, int]]:
  """(relative path parts, bytes, mtime_ns) of every image file under `top` (recursively),
  following symlinked folders once per real folder."""
  real = os.path.realpath(top)
  if real in seen:
    return []
  seen.add(real)
  found = []
  try:
    entries = sorted(os.scandir(top), key=lambda e: e.name)
  except OSError as e:
    raise DataError(f'{_where(root)}: cannot list folder {top} ({e.strerror or e}); make it '
                    f'readable or remove it') from None
  for entry in entries:
    if entry.name.startswith('.'):
      continue
    try:
      if entry.is_dir():
        found.extend(_walk(root, entry.path, seen))
      elif entry.is_file() and is_image_name(entry.name):
        stat = entry.stat()
        parts = tuple(os.path.relpath(entry.path, root).split(os.sep))
        found.append((parts, stat.st_size, stat.st_mtime_ns))
    except OSError as e:
      raise DataError(f'{_where(root)}: cannot read {entry.path} ({e.strerror or e}); make it '
                      f'readable or remove it') from None
  return found


def list_images(path: str) -> list[tuple[tuple[str, ...], int, int]]:
  """(relative path parts, bytes, mtime_ns) of the image files under `path`, sorted by path
  components; DataError (one line) when `path` is missing, not a folder or holds no image."""
  if not os.path.exists(path):
    raise DataError(f'data.name {_where(path)!r}: no such folder; point it at a folder of '
                    f'PNG / JPEG / WebP images')
  if not os.path.isdir(path):
    raise DataError(f'data.name {_where(path)!r} is a file, not a folder; point it at the '
                    f'folder that holds the images')
  files = sorted(_walk(path, path, set()))
  if not files:
    raise DataError(f'{_where(path)} holds no image files (read: '
                    f'{", ".join(IMAGE_EXTENSIONS)} in any case, in subfolders too, names '
                    f'starting with "." skipped); put the images there or point data.name at '
                    f'their folder')
  return files


def assign_classes(parts: list[tuple[str, ...]]):
  """(kept parts, labels int32 [N], class names, ignored parts) of image paths split into
  components: two or more first-level folders with images are classes (sorted names), and
  images directly under the root are then ignored; otherwise one class."""
  classes = sorted({p[0] for p in parts if len(p) > 1})
  if len(classes) < 2:
    return parts, np.zeros(len(parts), np.int32), (), []
  index = {name: i for i, name in enumerate(classes)}
  kept = [p for p in parts if len(p) > 1]
  ignored = [p for p in parts if len(p) == 1]
  return kept, np.array([index[p[0]] for p in kept], np.int32), tuple(classes), ignored


# ----------------------------------------------------------------------------- scanning


def read_header(path: str, file: str) -> tuple[tuple[int, int], str]:
  """((width, height), mode) of image `file` from its header, decoding no pixels; DataError
  (one line) naming the file when it is not a readable PNG / JPEG / WebP image."""
  try:
    with Image.open(file, formats=FORMATS) as image:
      return image.size, image.mode
  except MemoryError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (Pillow raises many kinds)
    raise DataError(f'{_where(path)}: cannot read image {file} ({_reason(e)}); replace or '
                    f'remove the file') from None


def _reason(error: Exception) -> str:
  """A Pillow exception as a short one-line reason."""
  if isinstance(error, Image.UnidentifiedImageError):
    return 'not a PNG / JPEG / WebP image, or its header is corrupt'
  text = ' '.join(str(error).split()) or type(error).__name__
  return text if len(text) <= 160 else text[:157] + '...'


def scan_folder(path: str) -> Scan:
  """The Scan of the images under `path` (headers only), cached per process while no file
  is added, removed or modified; DataError (one line) on a missing folder, no images or an
  unreadable header."""
  listed = list_images(path)
  key = (os.path.realpath(path), tuple(listed))
  if key in _SCANS:
    return _SCANS[key]
  parts, labels, classes, ignored = assign_classes([p for p, _, _ in listed])
  files = tuple('/'.join(p) for p in parts)
  headers = [read_header(path, os.path.join(path, *p)) for p in parts]
  scan = Scan(files=files, labels=labels, classes=classes,
              ignored=tuple('/'.join(p) for p in ignored),
              sizes=np.array([size for size, _ in headers], np.int64).reshape(-1, 2),
              modes=tuple(mode for _, mode in headers))
  while len(_SCANS) >= _MAX_CACHED_SCANS:
    del _SCANS[next(iter(_SCANS))]
  _SCANS[key] = scan
  return scan


# ----------------------------------------------------------------------------- planning


def channels_of(mode: str) -> int:
  """1 for a grey Pillow mode (GREY_MODES), else 3."""
  return 1 if mode in GREY_MODES else 3


def _setting(data: Mapping, key: str) -> int:
  """config.data[key] (default 0) as an int; ConfigError (one line) for anything else."""
  value = data.get(key, 0)
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ConfigError(f'data.{key} must be an integer, got {value!r}')
  return int(value)


def plan_folder(path: str, scan: Scan, data: Mapping) -> Plan:
  """The Plan of `scan` under config.data (image_size, channels); DataError / ConfigError
  (one line) for mixed sizes without data.image_size or invalid settings."""
  size, channels = _setting(data, 'image_size'), _setting(data, 'channels')
  if size < 0:
    raise ConfigError(f'data.image_size must be >= 0 (0: the images\' own size), got {size}')
  if channels not in (0, 1, 3):
    raise ConfigError(f'data.channels must be 0 (the majority of the images), 1 or 3, got '
                      f'{channels}')
  counts = [channels_of(m) for m in scan.modes]
  chosen = channels or (1 if 2 * counts.count(1) > len(counts) else 3)
  if size:
    height = width = size
  else:
    different = np.flatnonzero(np.any(scan.sizes != scan.sizes[0], axis=1))
    if different.size:
      (w0, h0), (w1, h1), j = scan.sizes[0], scan.sizes[different[0]], different[0]
      raise DataError(f'{_where(path)}: images differ in size ({scan.files[0]} is {w0}x{h0}, '
                      f'{scan.files[j]} is {w1}x{h1}, width x height); pass '
                      f'--config.data.image_size=N to centre-crop and resize them to N x N')
    width, height = (int(v) for v in scan.sizes[0])
  mode = 'L' if chosen == 1 else 'RGB'
  notes = [n for n in (_ignored_note(path, scan), _conversion_note(path, scan, mode, channels),
                       _upscale_note(path, scan, size)) if n]
  return Plan(image_shape=(height, width, chosen), num_classes=max(len(scan.classes), 1),
              mode=mode, size=size, notes=tuple(notes))


def _ignored_note(path: str, scan: Scan) -> str | None:
  if not scan.ignored:
    return None
  return (f'{_where(path)}: {len(scan.ignored)} image(s) directly under the folder (e.g. '
          f'{scan.ignored[0]}) ignored: the {len(scan.classes)} subfolders are the classes; '
          f'move them into a class folder to use them')


def _conversion_note(path: str, scan: Scan, mode: str, channels: int) -> str | None:
  converted: dict[str, int] = {}
  for m in scan.modes:
    if m != mode:
      converted[m] = converted.get(m, 0) + 1
  if not converted:
    return None
  how = ', '.join(f'{n} {m}' + _MODE_NOTES.get(m, '') for m, n in sorted(converted.items()))
  target = 'grey' if mode == 'L' else 'RGB'
  setting = f'data.channels={channels}' + ('' if channels else ': the majority')
  return (f'{_where(path)}: {sum(converted.values())} of {len(scan.modes)} images converted '
          f'to {target} ({setting}): {how}')


def _upscale_note(path: str, scan: Scan, size: int) -> str | None:
  if not size:
    return None
  short = scan.sizes.min(axis=1)
  small = np.flatnonzero(short < size)
  if not small.size:
    return None
  w, h = scan.sizes[small[0]]
  return (f'{_where(path)}: {small.size} of {len(short)} images are smaller than '
          f'data.image_size={size} and are upscaled (e.g. {scan.files[small[0]]}, {w}x{h})')


def describe_folder(path: str, data: Mapping) -> tuple[tuple[int, int, int], int]:
  """((H, W, C), num_classes) of `folder:path` under config.data, from the image headers
  (cached scan); DataError / ConfigError (one line) on bad input."""
  plan = plan_folder(path, scan_folder(path), data)
  return plan.image_shape, plan.num_classes


# ----------------------------------------------------------------------------- decoding


def square_box(width: int, height: int) -> tuple[int, int, int, int]:
  """(left, top, right, bottom) of the centred square of side min(width, height), offsets
  rounded down."""
  side = min(width, height)
  left, top = (width - side) // 2, (height - side) // 2
  return left, top, left + side, top + side


def to_mode(image: Image.Image, mode: str) -> Image.Image:
  """`image` in Pillow mode 'L' or 'RGB': palettes expanded, 16-bit / 32-bit grey to its
  high byte, transparency composited on white."""
  if image.mode == mode:
    return image
  if image.mode in ('P', 'PA'):
    has_alpha = image.mode == 'PA' or 'transparency' in image.info
    image = image.convert('RGBA' if has_alpha else 'RGB')
  elif image.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F'):
    image = Image.fromarray(_grey8(np.asarray(image), image.mode))
  if image.mode in ALPHA_MODES:
    white = Image.new('RGBA', image.size, (BACKGROUND,) * 4)
    image = Image.alpha_composite(white, image.convert('RGBA'))
  return image.convert(mode)


def _grey8(pixels: np.ndarray, mode: str) -> np.ndarray:
  """uint8 grey of high-bit-depth grey pixels: float ('F') clipped to [0, 255], integer
  modes clipped to 16 bits and shifted right by 8."""
  if mode == 'F':
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
  return (np.clip(pixels.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)


def draft(image: Image.Image, box: tuple, size: int) -> tuple:
  """Asks libjpeg to decode a not yet loaded JPEG `image` at 1/2, 1/4 or 1/8 scale while its
  crop `box` stays >= JPEG_DRAFT_GAP * size on a side; returns `box` in the drafted image's
  coordinates (unchanged for other formats or small images)."""
  side = box[2] - box[0]
  if image.format not in ('JPEG', 'MPO') or side < 2 * JPEG_DRAFT_GAP * size:
    return box
  width, height = image.size
  drafted = image.draft(image.mode, (max(width * JPEG_DRAFT_GAP * size // side, 1),
                                     max(height * JPEG_DRAFT_GAP * size // side, 1)))
  if drafted is None:
    return box
  scale = drafted[1][2] / width
  return tuple(v * scale for v in box)


def load_image(file: str, *, mode: str, size: int) -> np.ndarray:
  """uint8 [H, W, C] of image `file` in `mode` ('L' or 'RGB'), centre-cropped and resized to
  size x size when size > 0 (module docstring); Pillow errors propagate."""
  with Image.open(file, formats=FORMATS) as image:
    if size:
      box = draft(image, square_box(*image.size), size)
      image = to_mode(image, mode).resize((size, size), RESAMPLE, box=box)
    else:
      image = to_mode(image, mode)
    pixels = np.asarray(image)
  return pixels[..., None] if pixels.ndim == 2 else pixels


class FolderStore(store_lib.Store):
  """The images under a folder (module docstring), decoded with Pillow on every read.

  Attributes (besides Store's):
    root: the folder.
    files: relative paths of the N images, in index order.
    labels: int32 [N].
    classes: class folder names (label order), () with one class.
  """

  def __init__(self, path: str, data: Mapping):
    """Scans `path` (cached per process) and plans the images under config.data; prints
    the plan's notes once per process (not in worker processes, which reopen the store).

    Raises:
      DataError: missing folder, no images, an unreadable header, mixed sizes without
        data.image_size.
      ConfigError: an invalid data.image_size or data.channels.
    """
    scan = scan_folder(path)
    plan = plan_folder(path, scan, data)
    self.name = data.get('name') or _where(path)
    self.root = path
    self.files, self.labels, self.classes = scan.files, scan.labels, scan.classes
    self.image_shape, self.num_classes = plan.image_shape, plan.num_classes
    self.num_examples = len(scan.files)
    self._mode, self._size = plan.mode, plan.size
    self._paths = [os.path.join(path, *f.split('/')) for f in scan.files]
    if multiprocessing.parent_process() is None:
      for note in plan.notes:
        _warn_once(note)

  def load(self, index: int) -> np.ndarray:
    """uint8 [H, W, C] of image `index`; DataError (one line) naming the file when it cannot
    be decoded (truncated, corrupt) or no longer has the scanned size."""
    file = self._paths[index]
    try:
      pixels = load_image(file, mode=self._mode, size=self._size)
    except MemoryError:
      raise
    except Exception as e:  # pylint: disable=broad-except  (Pillow raises many kinds)
      raise DataError(f'{_where(self.root)}: cannot decode image {file} ({_reason(e)}); '
                      f'replace or remove the file') from None
    if pixels.shape != self.image_shape:
      h, w = pixels.shape[:2]
      raise DataError(f'{_where(self.root)}: image {file} is {w}x{h} now, not '
                      f'{self.image_shape[1]}x{self.image_shape[0]} as when the folder was '
                      f'scanned; rerun (or pass --config.data.image_size=N)')
    return pixels

  def read(self, indices):
    indices = np.asarray(indices, np.int64).reshape(-1)
    images = np.empty((len(indices), *self.image_shape), np.uint8)
    for i, index in enumerate(indices):
      images[i] = self.load(int(index))
    return images, self.labels[indices]


def _warn_once(note: str) -> None:
  """One 'warning: ...' line on stderr, the first time this process sees `note`."""
  if note not in _WARNED:
    _WARNED.add(note)
    print(f'warning: {note}', file=sys.stderr, flush=True)
