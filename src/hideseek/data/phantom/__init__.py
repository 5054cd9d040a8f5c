"""Deterministic synthetic chest radiographs: the project's built-in data set (DESIGN §7).

The phantom is written in exactly the real formats (COVIDx split files with a source
column; segmentation image/mask folders, Tang et al. XLSor naming for the training set),
so the ingestion code runs unchanged on it.

Signal layout, by construction (and checked by the tests):

* **Disease lives only inside the lung mask.** It is an additive field multiplied by the
  ground-truth mask, so two renders that differ only in the label are identical outside it.
* **The acquisition signature lives only outside the lung mask.** It is applied last, as
  ``where(mask, image, signed_image)``, so two renders that differ only in the source are
  identical inside it.
* **The lung mask does not depend on the class** (same anatomy distribution for every
  class), so mask area or shape cannot leak the label.

Three knobs set the signals' strength: ``shortcut`` (the share of patients imaged at their
class's home site: 0 makes the site independent of the label, 1 fixes it by the label),
``disease_contrast`` and ``signature_strength`` (0 removes the disease or the signatures).

Every random draw of a case comes from independent child generators (anatomy, geometry,
disease, signature, acquisition); which label or source is rendered never changes what the
other streams draw.

Grey levels (8-bit, final, default config): air ~10-25 (hospital_c lifts it by 35-50,
hospital_a's collimation border is ~6); mean lung grey 27-97 (median 63); mean outside the
lungs 67-145; mediastinum / heart / abdomen ~140-200, bone adds 10-40. Each lung covers
8-20 % of the image. Disease adds up to ~45 (pneumonia) / ~28 (COVID-19) grey levels at its
peak, severity drawn per case (many faint ones); images are 8-bit gray PNGs.

Parts: config (settings, SOURCES), geometry (image size, positioning), anatomy and vessels
(the patient and the lung mask), disease, acquisition, signature (per site), render (one
case), dataset (the folders on disk), sheet (contact sheet).
"""

from ...vocabulary import CLASSES
from .config import SOURCES, PhantomConfig, SegCounts
from .dataset import generate_phantom, write_phantom
from .geometry import case_size
from .render import render_case
from .sheet import make_contact_sheet

__all__ = ["CLASSES", "SOURCES", "PhantomConfig", "SegCounts", "case_size", "generate_phantom",
           "make_contact_sheet", "render_case", "write_phantom"]
