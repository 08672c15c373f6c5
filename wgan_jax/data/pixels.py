"""The pixel convention of `folder:PATH`, `npz:PATH` and `tfds:NAME`: one picture, one result.

Whether an image comes as a file (wgan_jax.data.folder, a Pillow image) or as a uint8 array
(wgan_jax.data.npz, wgan_jax.data.images for tfds:NAME), it is converted the same way:

  channels     grey = modes 1, L, LA, I, I;16*, F (arrays: 1 or 2 channels); colour = RGB,
               RGBA, P (palette), CMYK, YCbCr, ... (arrays: 3 or 4 channels). Transparent
               pixels (RGBA, LA, palette transparency; the last channel of a 2- or 4-channel
               array) are composited on white, as a viewer shows them (the colour stored under
               alpha 0 is arbitrary); palettes are expanded; 16-bit grey keeps its high byte;
               colour becomes grey by Pillow's ITU-R 601-2 luma, grey becomes colour repeated.
  image_size   S > 0: the centred square of side min(H, W) (offsets rounded down), resized to
               S x S with Pillow BICUBIC, which is antialiased when downscaling: the same as
               resizing the short side to S and centre-cropping, without rounding the long
               side. An image that already is S x S is kept bit for bit.

The channels are converted before the resize, so `resize_square_pixels(to_channels(x, C), S)`
of an array x gives the pixels `resize_square(to_mode(image, MODES[C]), S)` gives for the
same picture opened with Pillow. The named datasets (wgan_jax.data.images.IMAGE_DATASETS)
keep their own published preprocessing.

This module imports only numpy and Pillow: stream worker processes import it.
"""
import numpy as np
from PIL import Image

RESAMPLE = Image.Resampling.BICUBIC
BACKGROUND = 255      # white, under transparent pixels
MODES = {1: 'L', 3: 'RGB'}  # the Pillow mode of each number of output channels
GREY_MODES = frozenset({'1', 'L', 'LA', 'La', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F'})
ALPHA_MODES = frozenset({'RGBA', 'RGBa', 'LA', 'La', 'PA'})
_DEEP_GREY_MODES = ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F')
# Pillow's ITU-R 601-2 luma (`Image.convert('L')`): (R 19595 + G 38470 + B 7471 + 2^15) >> 16.
_LUMA = np.array([19595, 38470, 7471], np.uint32)


# ----------------------------------------------------------------------------- channels


def channels_of(mode: str) -> int:
  """1 for a grey Pillow mode (GREY_MODES), else 3."""
  return 1 if mode in GREY_MODES else 3


def to_mode(image: Image.Image, mode: str) -> Image.Image:
  """`image` in Pillow mode 'L' or 'RGB': palettes expanded, 16-bit / 32-bit grey to its
  high byte, transparency composited on white."""
  if image.mode == mode:
    return image
  if image.mode in ('P', 'PA'):
    has_alpha = image.mode == 'PA' or 'transparency' in image.info
    image = image.convert('RGBA' if has_alpha else 'RGB')
  elif image.mode in _DEEP_GREY_MODES:
    image = Image.fromarray(grey8(np.asarray(image), image.mode))
  if image.mode in ALPHA_MODES:
    white = Image.new('RGBA', image.size, (BACKGROUND,) * 4)
    image = Image.alpha_composite(white, image.convert('RGBA'))
  return image.convert(mode)


def grey8(pixels: np.ndarray, mode: str) -> np.ndarray:
  """uint8 grey of high-bit-depth grey pixels: float ('F') clipped to [0, 255], integer
  modes clipped to 16 bits and shifted right by 8."""
  if mode == 'F':
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
  return (np.clip(pixels.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)


def on_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
  """uint8 `colour` [..., C] with uint8 `alpha` [..., 1] composited on an opaque white
  background, with the integer arithmetic of Pillow's `Image.alpha_composite`."""
  a = alpha.astype(np.uint32)
  # Pillow: 7 fractional bits, x / 255 as ((x >> 8) + x) >> 8, rounded.
  blend = 128 * (colour.astype(np.uint32) * a + BACKGROUND * (255 - a)) + (0x80 << 7)
  return ((((blend >> 8) + blend) >> 8) >> 7).astype(np.uint8)


def luma(rgb: np.ndarray) -> np.ndarray:
  """uint8 [..., 3] -> [..., 1], Pillow's convert('L') of RGB."""
  return ((rgb.astype(np.uint32) @ _LUMA + 0x8000) >> 16).astype(np.uint8)[..., None]


def to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
  """uint8 [..., C0] with C0 in 1 (grey), 2 (grey + alpha), 3 (RGB), 4 (RGBA) -> [...,
  channels] (1 or 3): the pixels `to_mode` gives for the same image (alpha composited on
  white, colour to luma, grey repeated); `pixels` itself when C0 == channels."""
  have = pixels.shape[-1]
  if have == channels:
    return pixels
  if channels not in MODES or have not in (1, 2, 3, 4):
    raise ValueError(f'to_channels: {have} -> {channels} channels is not supported')
  colour = on_white(pixels[..., :-1], pixels[..., -1:]) if have in (2, 4) else pixels
  if colour.shape[-1] == channels:
    return colour
  return luma(colour) if channels == 1 else np.repeat(colour, 3, axis=-1)


# ----------------------------------------------------------------------------- size


def square_box(width: int, height: int) -> tuple[int, int, int, int]:
  """(left, top, right, bottom) of the centred square of side min(width, height), offsets
  rounded down."""
  side = min(width, height)
  left, top = (width - side) // 2, (height - side) // 2
  return left, top, left + side, top + side


def resize_square(image: Image.Image, size: int, box: tuple | None = None) -> Image.Image:
  """The centred square of `image` (or `box`, in its coordinates, e.g. after a JPEG draft)
  resized to size x size with RESAMPLE; a copy of an image that already is size x size."""
  return image.resize((size, size), RESAMPLE, box=box or square_box(*image.size))


def from_array(pixels: np.ndarray) -> Image.Image:
  """uint8 [H, W, C] (C 1 or 3) as a Pillow image ('L' or 'RGB')."""
  return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)


def as_array(image: Image.Image) -> np.ndarray:
  """A Pillow image's pixels as uint8 [H, W, C] (C 1 for grey)."""
  pixels = np.asarray(image)
  return pixels[..., None] if pixels.ndim == 2 else pixels


def resize_square_pixels(pixels: np.ndarray, size: int) -> np.ndarray:
  """uint8 [H0, W0, C] (C 1 or 3) -> [size, size, C] by `resize_square`; `pixels` itself
  when it already is size x size."""
  if pixels.shape[:2] == (size, size):
    return pixels
  return as_array(resize_square(from_array(pixels), size))
