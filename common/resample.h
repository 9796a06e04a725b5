/* resample.h — resizing 8-bit RGB images exactly as Pillow's
 * Image.resize(size, Image.BILINEAR) does (Pillow's libImaging/Resample.c,
 * the algorithm, not its code): separable, a horizontal pass then a
 * vertical one, each output pixel a weighted sum of the input pixels under
 * a triangle filter whose support is scaled by the downscale factor
 * (antialiasing: support 1·max(1, in/out) input pixels each side), weights
 * normalised to sum 1 and rounded to 22-bit fixed point, sums rounded and
 * clipped to 0..255 after each pass (the intermediate image is 8-bit).  A
 * pass whose size does not change is skipped, as in Pillow.
 *
 * This is what torchvision's Resize(…, BILINEAR) does to a PIL image, and
 * so what RobustBench's Res256Crop224 does to ImageNet validation JPEGs
 * (docs/assets.md; tests/test_res256.sh checks it against Pillow itself).
 */
#ifndef DRQ_RESAMPLE_H
#define DRQ_RESAMPLE_H

#include <stdint.h>

/* out (ow × oh × 3, interleaved RGB rows) ← in (w × h × 3) resized. */
void drq_resize_bilinear_rgb8(const uint8_t *in, int w, int h, uint8_t *out, int ow, int oh);
/* out (cw × ch × 3) ← the window [x0, x0 + cw) × [y0, y0 + ch) of in resized
 * to ow × oh: the same bytes as those of the whole resize, at a cost of the
 * window and the input rows and columns under it, not of ow × oh. */
void drq_resize_window_rgb8(const uint8_t *in, int w, int h, int ow, int oh, int x0, int y0, int cw, int ch,
                            uint8_t *out);

/* RobustBench's Res256Crop224 = torchvision Resize(256) + CenterCrop(224):
 * the shorter side to 256 (the longer to floor(256·long/short)), bilinear as
 * above, then the centred 224 × 224 window (offsets round((size − 224)/2),
 * halves to even as Python's round), as planar float32 RGB in [0, 1]
 * (byte / 255, ToTensor).  out: 3 × 224 × 224 floats.  Computes only the
 * window, so its time and memory are bounded by the input's size whatever
 * its aspect ratio. */
#define DRQ_RES256_SIZE 256
#define DRQ_CROP224_SIZE 224
void drq_res256_crop224(const uint8_t *rgb, int w, int h, float *out);
/* The resized size of a w × h image under Resize(256). */
void drq_res256_size(int w, int h, int *ow, int *oh);

#endif
