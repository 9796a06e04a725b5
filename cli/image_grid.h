/* image_grid.h — the report's picture of what an attack did (docs/report.md
 * §Images): for the first images of one purifier × attack (at the cell's
 * lowest seed), a row each of five columns
 *   clean x | P(x) | x_adv | P(x_adv) | amplified δ = 0.5 + (x_adv − x)·0.5/a
 * where a is the attack's eps (L∞) or the image's ‖δ‖∞ (L2), so ±a maps to
 * black / white.  Cells are scaled up (nearest neighbour) to at least 64
 * pixels and separated by 2 white pixels; a kind the attack did not save
 * (x_adv only, or purified only) is drawn mid-gray.  Grayscale for 1-channel
 * images, RGB for 3.
 */
#ifndef DRQ_IMAGE_GRID_H
#define DRQ_IMAGE_GRID_H

#include <stdint.h>

#include "common/util.h"
#include "server/store.h"

#define REPORT_GRID_NONE 1 /* no saved image for this purifier × attack: nothing written */

/* Writes the grid of up to nimages images to png_path.  0 written,
 * REPORT_GRID_NONE, or -1 + err (no clean image: the dataset cannot be
 * read; the spec is missing; writing failed). */
int report_image_grid(store *st, int64_t sweep, const char *purifier, const char *attack, int nimages,
                      const char *png_path, drq_err *err);

#endif
