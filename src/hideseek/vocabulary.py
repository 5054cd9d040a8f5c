"""The project's vocabulary: classes, partitions, representations, architectures.

Standard library only, so the library, the rule files (scheduler side) and the tests all
import the same names without pulling in numpy, pandas or torch.
"""

# Exact COVIDx label strings, in the order used by every table and model head.
CLASSES = ("normal", "pneumonia", "COVID-19")
# Each class as it appears in snake_case CSV column names (``covid_19``, ``val_sens_covid_19``).
CLASS_KEYS = {"normal": "normal", "pneumonia": "pneumonia", "COVID-19": "covid_19"}
PARTITIONS = ("train", "val", "test")
UNKNOWN_SOURCE = "unknown"

# The ROI Hide-and-Seek representations (Sadre et al. 2021, Fig. 1), in the paper's order.
REPRESENTATIONS = ("data", "lungs_isolated", "lungs_removed", "lungs_framed", "lungs_boxed_out")

# The five classifiers; each has its table in the paper (Tables 3-7).
COVIDNET_ARCHS = ("covidnet_cxr3a", "covidnet_cxr4a")
TORCHVISION_ARCHS = ("alexnet", "vgg11", "resnet50")
ARCHITECTURES = COVIDNET_ARCHS + TORCHVISION_ARCHS
TABLE_NUMBERS = {"covidnet_cxr3a": 3, "covidnet_cxr4a": 4, "alexnet": 5, "vgg11": 6, "resnet50": 7}

# Softmax columns of the per-image prediction files, by class.
PROB_COLUMNS = {"normal": "p_normal", "pneumonia": "p_pneumonia", "COVID-19": "p_covid"}


def is_covidnet(arch: str) -> bool:
    """COVID-Net PEPX re-implementations train with COVID-Net's recipe and never from ImageNet."""
    return arch in COVIDNET_ARCHS
