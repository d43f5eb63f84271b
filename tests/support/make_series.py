#!/usr/bin/env python3
"""Generate deterministic, realistic MR brain DICOM studies from the MNI152 T1 template.

Used by the Rust test suite (reader round-trip, slice ordering, transfer-syntax decoding) and
by `make run` (the demo study). Everything is synthetic: the patient is made up, the anatomy
is the MNI152 2009a symmetric template resampled along each series' geometry.

Usage:
    make_series.py --template NII --out DIR [--preset demo|test|ordering] [--seed S]
                   [--lesion | --no-lesion] [--verify]

The same arguments give byte-identical files: dates and times are fixed, UIDs are
`2.25.<integer>` of a name-based UUID (version 5) of (preset, seed, lesion on/off, what
the UID names), and the noise comes from numpy generators seeded with the seed.

Layout: DIR/manifest.json and one folder per series, DIR/<NN>_<name>/ (e.g.
DIR/01_ax_t1_mprage/IM0001.dcm), so a reader walking DIR also meets one non-DICOM file.
Rerunning into the same DIR first deletes the files its previous manifest lists.

Presets (each writes one study under DIR, plus DIR/manifest.json):

demo      One series, "AX T1 MPRAGE": 24 axial slices of 5 mm covering the brain, 256 x 256,
          12-bit unsigned, Explicit VR Little Endian, one file per slice (IM0001.dcm ... in
          spatial order). Lesion on by default: a bright, slightly heterogeneous ellipsoid
          of 2-3 cm inside the brain, its position drawn from the seed.

test      One study, one patient, seven series exercising the reader:
          01 AX T1 MPRAGE  axial 40 sl, 256x256, Explicit VR LE, one window
          02 COR T2        coronal 24 sl, 256x256, Implicit VR LE, two windows (multi-valued)
          03 SAG FLAIR     sagittal 20 sl, 256 rows x 224 columns, RLE Lossless,
                           VOILUTFunction SIGMOID
          04 AX T2         axial 30 sl, 256x256, Deflated Explicit VR LE, signed 16-bit
                           storage with RescaleSlope 0.5 / RescaleIntercept 1000 (stored
                           values go negative)
          05 AX T1 SE      axial 24 sl, 192x192, JPEG-LS Lossless, no window, file names are
                           the SOP Instance UIDs and InstanceNumbers are shuffled
          06 AX PD         axial 20 sl, 192x192, JPEG 2000 Lossless, MONOCHROME1 (inverted
                           storage), split into sub-folders part1/ and part2/, each
                           numbering its files from IM0001.dcm
          07 AX T1 SE MF   one Enhanced MR Image (multi-frame) of 16 axial frames,
                           Explicit VR LE, frames stored superior to inferior (reverse
                           spatial order), functional groups carry geometry and VOI
          Lesion off by default.

ordering  One study, three Explicit VR LE series of 20 slices, 192x192, for ordering tests:
          01 AX T1         axial, InstanceNumbers shuffled (file names follow them)
          02 OBL T1        double oblique (tilted 15 deg about the left-right axis and
                           5 deg about the head-foot axis), InstanceNumbers interleaved
                           (spatial positions 1, 3, 5, ... first, then 2, 4, ..., as in an
                           interleaved acquisition)
          03 SAG T1        sagittal, InstanceNumbers reversed, UID file names
          Lesion off by default.

Geometry is in DICOM patient coordinates (LPS, patient head first supine); the NIfTI
affine is RAS, so x and y are negated. Spatial order, as the manifest states, is ascending
dot(ImagePositionPatient, row_cosines x column_cosines).

Anatomy: the MNI template is skull-stripped, so it is wrapped in synthetic shells of CSF,
skull (inner table, marrow, outer table), muscle, scalp fat and skin, 15 mm in all: real
scans have tissue outside the brain, and the product's in-brain evidence check needs it.

Stored values: the normalised T1 values (0..1) become 0..~2600 signal (white matter
~2200, lesion ~2900), then Rician noise (sigma 12) makes the background small but not
zero; values are clipped to 12 bits. Other contrasts (T2, FLAIR, PD) are crude intensity
remaps of the T1 template, enough to make series look different; they are not physics.

manifest.json holds the ground truth per series (UIDs, geometry, files, spatial order of
instances and frames, windows and rescale exactly as written in the headers, lesion,
per-instance min/max/mean of the values after the modality LUT). `--verify` reads every
file back with pydicom, checks that pixel_array equals the intended stored values and that
the headers give the manifest's spatial order.

Timing on 2 cores shared with a compiler: demo ~4 s, ordering ~3 s, test ~10 s.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"

SPATIAL_ORDER_DEFINITION = "ascending dot(ImagePositionPatient, row_cosines x column_cosines)"

# Fixed clock so that output is reproducible; series are spaced a few minutes apart.
STUDY_DATE = "20240315"
STUDY_TIME_MINUTES = 9 * 60 + 30
MINUTES_PER_SERIES = 4

SIGNAL_SCALE = 2600.0  # template value 1.0 (255) -> 2600: white matter lands near 2200
NOISE_SIGMA = 12.0  # Rician noise: background becomes ~15 instead of exactly 0
MAX_12_BIT = 4095

# Encoders: the plugin named is the one in requirements.txt (gdcm is not installed).
ENCODING_PLUGIN = {
    RLELossless: "pylibjpeg",  # pylibjpeg-rle; pydicom's own encoder is 10x slower
    JPEGLSLossless: "pyjpegls",
    JPEG2000Lossless: "pylibjpeg",
}

# Axis pairs (row direction, column direction) in LPS. Row direction = along a row, i.e.
# towards increasing column index. Normals: axial +S, coronal +P, sagittal +R.
AXIAL = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
CORONAL = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0))
SAGITTAL = ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0))

# Centre of the head in LPS mm (MNI RAS (0, -17, 15)); every series is centred on it.
HEAD_CENTER_LPS = (0.0, 17.0, 15.0)


# --------------------------------------------------------------------------------------
# Series descriptions
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contrast:
    """A crude tissue-contrast remap of the T1 template plus realistic MR parameters."""

    name: str  # T1, T2, FLAIR, PD (AcquisitionContrast in the enhanced object)
    # Piecewise-linear remap of the normalised T1 value (0..1). Template landmarks:
    # background 0, skull ~0.04, CSF ~0.2-0.26, grey matter ~0.65, white matter ~0.86,
    # scalp fat 0.9 (the last two from HEAD_LAYERS).
    t1_points: tuple[float, ...]
    out_points: tuple[float, ...]
    lesion_level: float  # tumour intensity on the same 0..1 scale: brighter than tissue
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    scan_options: tuple[str, ...]
    acquisition_type: str
    repetition_time: float
    echo_time: float
    inversion_time: float | None
    echo_train_length: int
    flip_angle: float
    sequence_name: str

    def apply(self, t1: np.ndarray) -> np.ndarray:
        return np.interp(t1, self.t1_points, self.out_points).astype(np.float32)


LANDMARKS = (0.0, 0.08, 0.26, 0.45, 0.65, 0.86, 1.0)

T1_MPRAGE = Contrast("T1", (0.0, 1.0), (0.0, 1.0), 1.12, ("GR", "IR"), ("SK", "SP", "MP"),
                     ("PFP",), "3D", 2300.0, 2.98, 900.0, 1, 9.0, "*tfl3d1")
T1_SE = Contrast("T1", (0.0, 1.0), (0.0, 1.0), 1.12, ("SE",), ("SP",), ("SP",), "2D",
                 550.0, 12.0, None, 1, 90.0, "*se2d1")
T2_TSE = Contrast("T2", LANDMARKS, (0.0, 0.05, 0.95, 0.6, 0.55, 0.38, 0.6), 1.05, ("SE",),
                  ("SK", "SP"), ("PFP",), "2D", 5000.0, 95.0, None, 16, 150.0, "*tse2d1_16")
FLAIR = Contrast("FLAIR", LANDMARKS, (0.0, 0.05, 0.12, 0.35, 0.62, 0.48, 0.55), 0.95,
                 ("SE", "IR"), ("SK", "SP", "MP"), ("FS",), "2D", 9000.0, 81.0, 2500.0, 16,
                 150.0, "*tir2d1_16")
PROTON_DENSITY = Contrast("PD", LANDMARKS, (0.0, 0.05, 0.7, 0.72, 0.75, 0.6, 0.6), 0.95,
                          ("SE",), ("SK", "SP"), ("PFP",), "2D", 3000.0, 12.0, None, 8,
                          150.0, "*tse2d1_8")


@dataclass(frozen=True)
class Window:
    """A VOI window in signal units (what a MONOCHROME2 reader sees after rescale)."""

    center: float
    width: float
    explanation: str


@dataclass(frozen=True)
class SeriesSpec:
    key: str  # folder name
    number: int
    description: str
    orientation: str  # axial | coronal | sagittal | oblique
    axes: tuple[tuple[float, float, float], tuple[float, float, float]]
    rows: int
    columns: int
    pixel_spacing: tuple[float, float]  # (between rows, between columns), DICOM order
    slices: int
    slice_spacing: float
    slice_thickness: float
    contrast: Contrast
    transfer_syntax: str = ExplicitVRLittleEndian
    signed: bool = False  # True: int16 storage, BitsStored 16
    rescale: tuple[float, float] = (1.0, 0.0)  # (slope, intercept)
    photometric: str = "MONOCHROME2"
    windows: tuple[Window, ...] = ()
    voi_function: str | None = None
    instance_order: str = "spatial"  # spatial | reversed | shuffled | interleaved
    file_names: str = "instance"  # instance: IM0001.dcm; uid: <SOPInstanceUID>.dcm
    subfolders: int = 1
    multiframe: bool = False
    frames_reversed: bool = False  # multi-frame only: store frames in reverse spatial order


def oblique_axes(tilt_deg: float, yaw_deg: float):
    """Axial axes tilted about the left-right axis, then turned about the head-foot axis."""
    tilt, yaw = np.radians(tilt_deg), np.radians(yaw_deg)
    about_x = np.array([[1, 0, 0],
                        [0, np.cos(tilt), -np.sin(tilt)],
                        [0, np.sin(tilt), np.cos(tilt)]])
    about_z = np.array([[np.cos(yaw), -np.sin(yaw), 0],
                        [np.sin(yaw), np.cos(yaw), 0],
                        [0, 0, 1]])
    rotation = about_z @ about_x
    return tuple(tuple(float(v) for v in rotation @ np.array(axis)) for axis in AXIAL)


T1_WINDOW = (Window(1500, 3000, "T1 BRAIN"),)


def demo_preset() -> list[SeriesSpec]:
    return [
        SeriesSpec("01_ax_t1_mprage", 1, "AX T1 MPRAGE", "axial", AXIAL, 256, 256,
                   (0.9375, 0.9375), 24, 5.0, 5.0, T1_MPRAGE, windows=T1_WINDOW),
    ]


def test_preset() -> list[SeriesSpec]:
    return [
        SeriesSpec("01_ax_t1_mprage", 1, "AX T1 MPRAGE", "axial", AXIAL, 256, 256,
                   (0.9375, 0.9375), 40, 3.5, 3.0, T1_MPRAGE, windows=T1_WINDOW),
        SeriesSpec("02_cor_t2", 2, "COR T2", "coronal", CORONAL, 256, 256, (0.9375, 0.9375),
                   24, 7.0, 5.0, T2_TSE, transfer_syntax=ImplicitVRLittleEndian,
                   windows=(Window(1300, 2600, "BRAIN"), Window(2048, 4096, "WIDE"))),
        SeriesSpec("03_sag_flair", 3, "SAG FLAIR", "sagittal", SAGITTAL, 256, 224, (1.0, 1.0),
                   20, 7.0, 5.0, FLAIR, transfer_syntax=RLELossless,
                   windows=(Window(1300, 2000, "FLAIR SIGMOID"),), voi_function="SIGMOID"),
        SeriesSpec("04_ax_t2", 4, "AX T2", "axial", AXIAL, 256, 256, (0.9375, 0.9375), 30,
                   4.5, 4.0, T2_TSE, transfer_syntax=DeflatedExplicitVRLittleEndian,
                   signed=True, rescale=(0.5, 1000.0),
                   windows=(Window(1300, 2600, "BRAIN"),)),
        SeriesSpec("05_ax_t1_se", 5, "AX T1 SE", "axial", AXIAL, 192, 192, (1.25, 1.25), 24,
                   5.5, 5.0, T1_SE, transfer_syntax=JPEGLSLossless, instance_order="shuffled",
                   file_names="uid"),
        SeriesSpec("06_ax_pd", 6, "AX PD", "axial", AXIAL, 192, 192, (1.25, 1.25), 20, 6.5,
                   5.0, PROTON_DENSITY, transfer_syntax=JPEG2000Lossless,
                   photometric="MONOCHROME1", windows=(Window(1400, 2800, "PD"),),
                   subfolders=2),
        SeriesSpec("07_ax_t1_se_mf", 7, "AX T1 SE MF", "axial", AXIAL, 256, 256,
                   (0.9375, 0.9375), 16, 7.5, 5.0, T1_SE, windows=T1_WINDOW, multiframe=True,
                   frames_reversed=True),
    ]


def ordering_preset() -> list[SeriesSpec]:
    return [
        SeriesSpec("01_ax_t1", 1, "AX T1", "axial", AXIAL, 192, 192, (1.25, 1.25), 20, 6.0,
                   5.0, T1_SE, windows=T1_WINDOW, instance_order="shuffled"),
        SeriesSpec("02_obl_t1", 2, "OBL T1", "oblique", oblique_axes(15.0, 5.0), 192, 192,
                   (1.25, 1.25), 20, 6.0, 5.0, T1_SE, windows=T1_WINDOW,
                   instance_order="interleaved"),
        SeriesSpec("03_sag_t1", 3, "SAG T1", "sagittal", SAGITTAL, 192, 192, (1.25, 1.25), 20,
                   6.5, 5.0, T1_SE, windows=T1_WINDOW, instance_order="reversed",
                   file_names="uid"),
    ]


PRESETS = {"demo": demo_preset, "test": test_preset, "ordering": ordering_preset}
PATIENT_NAMES = {"demo": "DEMO^BRAIN", "test": "TEST^READER", "ordering": "TEST^ORDERING"}
LESION_BY_DEFAULT = {"demo": True, "test": False, "ordering": False}


# --------------------------------------------------------------------------------------
# Template and resampling
# --------------------------------------------------------------------------------------


# Layers around the brain, from the inside out: (thickness in mm, normalised T1 value).
# The MNI template is skull-stripped; a real head has CSF, skull and scalp around the brain,
# and the product's "evidence outside the brain" check is meaningless without them.
HEAD_LAYERS = (
    (2, 0.20),  # CSF and meninges
    (2, 0.04),  # inner table of the skull: cortical bone, no signal
    (2, 0.55),  # diploe: fatty marrow
    (2, 0.04),  # outer table
    (2, 0.35),  # galea and muscle
    (4, 0.90),  # subcutaneous fat, the brightest tissue on T1
    (1, 0.45),  # skin
)
BRAIN_THRESHOLD = 0.02  # the template is exactly 0 outside the brain
SKULL_SMOOTHING_MM = 5  # closing radius: the skull does not follow the sulci


def dilate(mask: np.ndarray, diagonal: bool) -> np.ndarray:
    """One-voxel dilation: 6-neighbourhood, or the full 3x3x3 box when diagonal."""
    grown = mask.copy()
    for axis in range(3):
        # The box is separable: dilating the running result along each axis in turn gives
        # it; dilating the original mask along each axis gives the 6-neighbourhood.
        source = grown.copy() if diagonal else mask
        lower = tuple(slice(None, -1) if a == axis else slice(None) for a in range(3))
        upper = tuple(slice(1, None) if a == axis else slice(None) for a in range(3))
        grown[upper] |= source[lower]
        grown[lower] |= source[upper]
    return grown


def grow(mask: np.ndarray, step: int) -> np.ndarray:
    """Dilation step `step` of a series: alternating 6- and 26-neighbour steps grow
    roughly spherical shells (not diamonds or cubes) without scipy's distance transform."""
    return dilate(mask, diagonal=bool(step % 2))


def add_synthetic_head(brain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wrap the skull-stripped template in CSF, skull and scalp shells (1 mm voxels); also
    returns the intracranial space (the brain and the CSF inside the skull), as 0/1."""
    inside = brain > BRAIN_THRESHOLD
    closed = inside
    for step in range(SKULL_SMOOTHING_MM):
        closed = grow(closed, step)
    outside = ~closed
    for step in range(SKULL_SMOOTHING_MM):
        outside = grow(outside, step)
    closed = ~outside | inside  # closing = dilation then erosion
    head = np.where(closed & ~inside, HEAD_LAYERS[0][1], brain).astype(np.float32)
    covered, step = closed, 0
    intracranial = closed
    for layer, (thickness, value) in enumerate(HEAD_LAYERS):
        for _ in range(thickness):
            shell = grow(covered, step) & ~covered
            head[shell] = value
            covered, step = covered | shell, step + 1
        if layer == 0:  # CSF and meninges: still inside the skull
            intracranial = covered
    return head, intracranial.astype(np.float32)


@dataclass
class Template:
    padded: np.ndarray  # normalised 0..1 float32, padded with one voxel of zeros per side
    flat: np.ndarray  # C-order view of `padded` for gathering corners by flat index
    lps_to_voxel: np.ndarray  # 4x4: LPS mm -> voxel index in the *unpadded* volume
    sha256: str
    brain_flat: np.ndarray  # 1.0 in the intracranial space, same layout as `flat`

    @classmethod
    def load(cls, path: Path) -> "Template":
        image = nib.load(str(path))
        data = np.asarray(image.dataobj, dtype=np.float32)
        normalised = data / max(float(data.max()), 1e-6)
        if not np.allclose(np.abs(np.diag(image.affine)[:3]), 1.0):
            raise ValueError("the synthetic head shells assume a 1 mm isotropic template")
        head, intracranial = add_synthetic_head(normalised)
        lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
        # NIfTI data come in Fortran order; C order makes the flat-index gather valid.
        padded = np.ascontiguousarray(np.pad(head, 1))
        brain = np.ascontiguousarray(np.pad(intracranial, 1))
        return cls(
            padded=padded,
            flat=padded.ravel(),
            lps_to_voxel=np.linalg.inv(image.affine) @ lps_to_ras,
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            brain_flat=brain.ravel(),
        )

    def brain(self, points_lps: np.ndarray) -> np.ndarray:
        """Whether LPS points (..., 3) lie in the intracranial space (brain and CSF)."""
        return self.sample(points_lps, self.brain_flat) > 0.5

    def sample(self, points_lps: np.ndarray, flat: np.ndarray | None = None) -> np.ndarray:
        """Trilinear interpolation at LPS points (..., 3) of the head (or of `flat`, a volume
        laid out like it); zero outside the template."""
        flat = self.flat if flat is None else flat
        shape = points_lps.shape[:-1]
        points = points_lps.reshape(-1, 3)
        voxel = points @ self.lps_to_voxel[:3, :3].T + self.lps_to_voxel[:3, 3]
        # +1 for the padding; clipping lands anything outside on the zero border.
        padded_shape = np.array(self.padded.shape)
        coords = np.clip(voxel + 1.0, 0.0, padded_shape - 1.0)
        base = np.minimum(np.floor(coords).astype(np.int64), padded_shape - 2)
        frac = (coords - base).astype(np.float32)
        stride_i = int(padded_shape[1] * padded_shape[2])
        stride_j = int(padded_shape[2])
        origin = base[:, 0] * stride_i + base[:, 1] * stride_j + base[:, 2]
        fi, fj, fk = frac[:, 0], frac[:, 1], frac[:, 2]

        def along_k(offset: int) -> np.ndarray:
            low = np.take(flat, origin + offset)
            return low + fk * (np.take(flat, origin + offset + 1) - low)

        def along_jk(offset: int) -> np.ndarray:
            low = along_k(offset)
            return low + fj * (along_k(offset + stride_j) - low)

        low = along_jk(0)
        result = low + fi * (along_jk(stride_i) - low)
        return result.reshape(shape)


@dataclass
class Geometry:
    """Slice geometry as written to the headers (already rounded), in spatial order."""

    row_dir: np.ndarray
    col_dir: np.ndarray
    normal: np.ndarray
    positions: np.ndarray  # (slices, 3) ImagePositionPatient, ascending along the normal
    spec: SeriesSpec

    def pixel_points(self, index: int) -> np.ndarray:
        """LPS centres of every pixel of one slice, shape (rows, columns, 3)."""
        row_spacing, col_spacing = self.spec.pixel_spacing
        cols = np.arange(self.spec.columns) * col_spacing
        rows = np.arange(self.spec.rows) * row_spacing
        return (self.positions[index]
                + rows[:, None, None] * self.col_dir
                + cols[None, :, None] * self.row_dir)


def round_ds(value: float, decimals: int) -> float:
    rounded = round(float(value), decimals)
    return 0.0 if rounded == 0 else rounded  # no "-0" in the headers


def ds_text(value: float, decimals: int = 6) -> str:
    """Decimal String text, at most 16 characters, without trailing zeros."""
    text = f"{round_ds(value, decimals):.{decimals}f}".rstrip("0").rstrip(".")
    return text if len(text) <= 16 else f"{value:.10g}"


def build_geometry(spec: SeriesSpec) -> Geometry:
    # Cosines rounded as written (6 decimals); the normal comes from the rounded values
    # so that the manifest's order is exactly what a reader computes from the headers.
    row_dir = np.array([round_ds(v, 6) for v in spec.axes[0]])
    col_dir = np.array([round_ds(v, 6) for v in spec.axes[1]])
    normal = np.cross(row_dir, col_dir)
    row_spacing, col_spacing = spec.pixel_spacing
    in_plane_half = ((spec.columns - 1) / 2 * col_spacing * row_dir
                     + (spec.rows - 1) / 2 * row_spacing * col_dir)
    offsets = (np.arange(spec.slices) - (spec.slices - 1) / 2) * spec.slice_spacing
    centres = np.array(HEAD_CENTER_LPS) + offsets[:, None] * normal
    positions = np.array([[round_ds(v, 4) for v in corner] for corner in centres - in_plane_half])
    return Geometry(row_dir, col_dir, normal, positions, spec)


# --------------------------------------------------------------------------------------
# Lesion
# --------------------------------------------------------------------------------------


@dataclass
class Lesion:
    """A bright tumour-like ellipsoid (axes along LPS) with a smooth plane-wave texture."""

    center_lps: np.ndarray
    radii: np.ndarray
    wave_vectors: np.ndarray  # (3, 3) rad/mm
    wave_phases: np.ndarray  # (3,)

    EDGE = 0.2  # soft boundary over the outer 20% of the radius (partial volume)
    TEXTURE = 0.08  # +-8% heterogeneity

    @classmethod
    def draw(cls, seed: int, template: Template) -> "Lesion":
        rng = np.random.default_rng([seed, 0x1E5])
        for _ in range(100):
            # Deep hemispheric white matter, either side: far enough from the cortex that
            # a 14 mm radius stays inside the brain.
            side = rng.choice([-1.0, 1.0])
            center_ras = np.array([side * rng.uniform(22, 34), rng.uniform(-40, 10),
                                   rng.uniform(12, 34)])
            center = center_ras * np.array([-1.0, -1.0, 1.0])
            if template.sample(center) > 0.55:  # grey or white matter, not CSF
                break
        else:
            raise RuntimeError("no lesion position inside the brain: is this the MNI template?")
        radii = rng.uniform(10.0, 14.0, size=3)
        directions = rng.normal(size=(3, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wavelengths = rng.uniform(6.0, 10.0, size=3)
        return cls(center, radii, directions * (2 * np.pi / wavelengths)[:, None],
                   rng.uniform(0, 2 * np.pi, size=3))

    def blend(self, values: np.ndarray, points: np.ndarray, level: float) -> np.ndarray:
        distance = np.linalg.norm((points - self.center_lps) / self.radii, axis=-1)
        weight = np.clip((1.0 - distance) / self.EDGE, 0.0, 1.0).astype(np.float32)
        if not weight.any():
            return values
        texture = np.cos(points @ self.wave_vectors.T + self.wave_phases).mean(axis=-1)
        lesion = level * (1.0 + self.TEXTURE * texture)
        return (values * (1.0 - weight) + lesion * weight).astype(np.float32)

    def to_manifest(self) -> dict:
        return {"center_lps_mm": [round(float(v), 3) for v in self.center_lps],
                "radii_mm": [round(float(v), 3) for v in self.radii],
                "axes": "aligned with LPS x, y, z"}


# --------------------------------------------------------------------------------------
# Pixel synthesis and storage
# --------------------------------------------------------------------------------------


def synthesize_signal(template: Template, geometry: Geometry, lesion: Lesion | None,
                      rng: np.random.Generator) -> np.ndarray:
    """Real-valued signal per slice (slices, rows, columns), spatial order, 0..4095."""
    contrast = geometry.spec.contrast
    slices = []
    for index in range(len(geometry.positions)):
        points = geometry.pixel_points(index)
        values = contrast.apply(template.sample(points))
        if lesion is not None:
            values = lesion.blend(values, points, contrast.lesion_level)
        signal = values * SIGNAL_SCALE
        noise = rng.normal(0.0, NOISE_SIGMA, size=(2,) + signal.shape)
        magnitude = np.hypot(signal + noise[0], noise[1])  # Rician, like a magnitude image
        slices.append(np.clip(magnitude, 0.0, MAX_12_BIT))
    return np.stack(slices)


def to_stored(signal: np.ndarray, spec: SeriesSpec) -> np.ndarray:
    """Stored pixel values whose modality LUT (slope, intercept) gives the intended values."""
    real = MAX_12_BIT - signal if spec.photometric == "MONOCHROME1" else signal
    slope, intercept = spec.rescale
    stored = np.rint((real - intercept) / slope)
    if spec.signed:
        return np.clip(stored, -32768, 32767).astype(np.int16)
    return np.clip(stored, 0, MAX_12_BIT).astype(np.uint16)


def stored_windows(spec: SeriesSpec) -> list[Window]:
    """Windows in the units a reader sees after rescale; MONOCHROME1 stores inverted values."""
    if spec.photometric == "MONOCHROME1":
        return [Window(MAX_12_BIT - w.center, w.width, w.explanation) for w in spec.windows]
    return list(spec.windows)


def instance_numbers(spec: SeriesSpec, seed: int) -> list[int]:
    """InstanceNumber for each spatial index (index 0 = lowest along the normal)."""
    count = spec.slices
    if spec.instance_order == "spatial":
        order = list(range(count))
    elif spec.instance_order == "reversed":
        order = list(reversed(range(count)))
    elif spec.instance_order == "interleaved":
        order = list(range(0, count, 2)) + list(range(1, count, 2))
    elif spec.instance_order == "shuffled":
        rng = np.random.default_rng([seed, 0x5FF, spec.number])
        order = [int(i) for i in rng.permutation(count)]
    else:
        raise ValueError(f"unknown instance order {spec.instance_order}")
    # order[k] is the spatial index acquired k-th; invert to spatial index -> number.
    numbers = [0] * count
    for acquisition, spatial in enumerate(order):
        numbers[spatial] = acquisition + 1
    return numbers


# --------------------------------------------------------------------------------------
# DICOM attributes
# --------------------------------------------------------------------------------------


@dataclass
class StudyContext:
    preset: str
    seed: int
    with_lesion: bool

    def uid(self, *parts: object) -> str:
        # A name-based (SHA-1, version 5) UUID as a 2.25 UID: stable for the same arguments,
        # different whenever the pixels differ (a UID names one content). pydicom's
        # generate_uid cannot do this: it ignores its entropy when prefix is None.
        variant = "lesion" if self.with_lesion else "no-lesion"
        name = "/".join(["dicom-xai/make_series", self.preset, str(self.seed), variant,
                         *map(str, parts)])
        return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, name).int}"

    @property
    def patient_id(self) -> str:
        return f"SYN-{self.preset.upper()}-{self.seed:04d}"

    @property
    def study_uid(self) -> str:
        return self.uid("study")

    @property
    def frame_of_reference_uid(self) -> str:
        return self.uid("frame-of-reference")


def clock_time(seconds: int) -> str:
    return f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"


def series_time(spec: SeriesSpec, extra_seconds: int = 0) -> str:
    """Series start a few minutes apart; instances a second apart within a series."""
    return clock_time((STUDY_TIME_MINUTES + MINUTES_PER_SERIES * spec.number) * 60 + extra_seconds)


def add_common_modules(ds: Dataset, ctx: StudyContext, spec: SeriesSpec) -> None:
    """Patient, study, series, frame of reference and equipment: the same in every file."""
    ds.SpecificCharacterSet = "ISO_IR 100"
    # Patient (synthetic, never a real person)
    ds.PatientName = PATIENT_NAMES[ctx.preset]
    ds.PatientID = ctx.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.PatientAge = "054Y"
    ds.PatientWeight = "65"
    # General Study
    ds.StudyInstanceUID = ctx.study_uid
    ds.StudyDate = STUDY_DATE
    ds.StudyTime = clock_time(STUDY_TIME_MINUTES * 60)
    ds.AccessionNumber = f"ACC{ctx.seed:06d}"
    ds.StudyID = "1"
    ds.StudyDescription = "MR BRAIN W/O CONTRAST"
    ds.ReferringPhysicianName = "REFERRER^SYNTHETIC"
    # General Series
    ds.Modality = "MR"
    ds.SeriesInstanceUID = ctx.uid("series", spec.key)
    ds.SeriesNumber = spec.number
    ds.SeriesDescription = spec.description
    ds.SeriesDate = STUDY_DATE
    ds.SeriesTime = series_time(spec)
    ds.ProtocolName = spec.description
    ds.BodyPartExamined = "HEAD"
    ds.PatientPosition = "HFS"
    # Frame of Reference: one for the study (the patient did not move between series)
    ds.FrameOfReferenceUID = ctx.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    # Equipment
    ds.Manufacturer = "SYNTHETIC"
    ds.InstitutionName = "Synthetic Imaging Centre"
    ds.StationName = "SYNMR01"
    ds.ManufacturerModelName = "dicom-xai make_series"
    ds.DeviceSerialNumber = "SYN0001"
    ds.SoftwareVersions = "make_series 1"
    ds.ImageComments = "SYNTHETIC: resampled from the MNI152 2009a template, not a patient"


def add_pixel_description(ds: Dataset, spec: SeriesSpec) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = spec.photometric
    ds.Rows = spec.rows
    ds.Columns = spec.columns
    ds.BitsAllocated = 16
    ds.BitsStored = 16 if spec.signed else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if spec.signed else 0


def add_mr_parameters(ds: Dataset, contrast: Contrast) -> None:
    ds.ScanningSequence = list(contrast.scanning_sequence)
    ds.SequenceVariant = list(contrast.sequence_variant)
    ds.ScanOptions = list(contrast.scan_options)
    ds.MRAcquisitionType = contrast.acquisition_type
    ds.SequenceName = contrast.sequence_name
    ds.RepetitionTime = ds_text(contrast.repetition_time)
    ds.EchoTime = ds_text(contrast.echo_time)
    if contrast.inversion_time is not None:
        ds.InversionTime = ds_text(contrast.inversion_time)
    ds.EchoTrainLength = contrast.echo_train_length
    ds.FlipAngle = ds_text(contrast.flip_angle)
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = "127.7"  # 1H at 3 T
    ds.ImagedNucleus = "1H"
    ds.MagneticFieldStrength = "3"
    ds.PixelBandwidth = "200"
    ds.ReceiveCoilName = "HeadNeck_20"
    ds.TransmitCoilName = "Body"
    ds.InPlanePhaseEncodingDirection = "ROW"


def one_or_many(values: list):
    return values[0] if len(values) == 1 else values


def add_voi(ds: Dataset, spec: SeriesSpec) -> None:
    windows = stored_windows(spec)
    if not windows:
        return
    # Several windows make these attributes multi-valued, index for index.
    ds.WindowCenter = one_or_many([ds_text(w.center) for w in windows])
    ds.WindowWidth = one_or_many([ds_text(w.width) for w in windows])
    ds.WindowCenterWidthExplanation = one_or_many([w.explanation for w in windows])
    if spec.voi_function:
        ds.VOILUTFunction = spec.voi_function


def add_rescale(ds: Dataset, spec: SeriesSpec) -> None:
    # MR Image IOD has no Modality LUT module, but readers meet these attributes in real
    # MR files (vendors write them); they must be honoured.
    slope, intercept = spec.rescale
    if (slope, intercept) != (1.0, 0.0):
        ds.RescaleSlope = ds_text(slope)
        ds.RescaleIntercept = ds_text(intercept)
        ds.RescaleType = "US"


def file_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "DXAI_MKSERIES"
    return meta


def attach_pixels(ds: Dataset, pixels: np.ndarray, transfer_syntax: str) -> None:
    """Native data for uncompressed syntaxes, an encapsulated lossless codestream otherwise."""
    if transfer_syntax in ENCODING_PLUGIN:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # compress() starts native
        ds.compress(transfer_syntax, pixels, encoding_plugin=ENCODING_PLUGIN[transfer_syntax],
                    generate_instance_uid=False)
        ds.LossyImageCompression = "00"
    else:
        ds.PixelData = pixels.tobytes()
        ds["PixelData"].VR = "OW"


def single_frame_dataset(ctx: StudyContext, spec: SeriesSpec, geometry: Geometry,
                         spatial_index: int, instance_number: int, sop_uid: str,
                         pixels: np.ndarray) -> Dataset:
    ds = Dataset()
    ds.file_meta = file_meta(MR_IMAGE_STORAGE, sop_uid, spec.transfer_syntax)
    add_common_modules(ds, ctx, spec)
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = STUDY_DATE
    ds.InstanceCreationTime = series_time(spec, 30)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance_number
    ds.AcquisitionDate = STUDY_DATE
    ds.AcquisitionTime = series_time(spec, instance_number)
    ds.ContentDate = STUDY_DATE
    ds.ContentTime = series_time(spec, instance_number)
    position = geometry.positions[spatial_index]
    ds.ImagePositionPatient = [ds_text(v, 4) for v in position]
    ds.ImageOrientationPatient = [ds_text(v) for v in (*geometry.row_dir, *geometry.col_dir)]
    ds.SliceLocation = ds_text(float(position @ geometry.normal), 4)
    ds.PixelSpacing = [ds_text(v) for v in spec.pixel_spacing]
    ds.SliceThickness = ds_text(spec.slice_thickness)
    ds.SpacingBetweenSlices = ds_text(spec.slice_spacing)
    add_mr_parameters(ds, spec.contrast)
    add_pixel_description(ds, spec)
    add_rescale(ds, spec)
    add_voi(ds, spec)
    attach_pixels(ds, pixels, spec.transfer_syntax)
    return ds


# ---- Enhanced MR (multi-frame) -------------------------------------------------------


def item(**attributes) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def code(value: str, scheme: str, meaning: str) -> Dataset:
    return item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def enhanced_shared_groups(spec: SeriesSpec, geometry: Geometry) -> Dataset:
    contrast = spec.contrast
    windows = stored_windows(spec)
    slope, intercept = spec.rescale
    shared = item(
        PixelMeasuresSequence=Sequence([item(
            PixelSpacing=[ds_text(v) for v in spec.pixel_spacing],
            SliceThickness=ds_text(spec.slice_thickness),
            SpacingBetweenSlices=ds_text(spec.slice_spacing))]),
        PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=[
            ds_text(v) for v in (*geometry.row_dir, *geometry.col_dir)])]),
        PixelValueTransformationSequence=Sequence([item(
            RescaleIntercept=ds_text(intercept), RescaleSlope=ds_text(slope),
            RescaleType="US")]),
        FrameAnatomySequence=Sequence([item(
            AnatomicRegionSequence=Sequence([code("12738006", "SCT", "Brain")]),
            FrameLaterality="U")]),
        MRImageFrameTypeSequence=Sequence([item(
            FrameType=["ORIGINAL", "PRIMARY", "VOLUME", "NONE"], PixelPresentation="MONOCHROME",
            VolumetricProperties="VOLUME", VolumeBasedCalculationTechnique="NONE",
            ComplexImageComponent="MAGNITUDE", AcquisitionContrast=contrast.name)]),
        MRTimingAndRelatedParametersSequence=Sequence([item(
            RepetitionTime=ds_text(contrast.repetition_time),
            FlipAngle=ds_text(contrast.flip_angle),
            EchoTrainLength=contrast.echo_train_length,
            RFEchoTrainLength=contrast.echo_train_length, GradientEchoTrainLength=0,
            SpecificAbsorptionRateSequence=Sequence([item(
                SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY",
                SpecificAbsorptionRateValue=0.4)]),
            GradientOutputType="DB_DT", GradientOutput=20.0,
            OperatingModeSequence=Sequence([
                item(OperatingModeType=mode, OperatingMode="IEC_NORMAL")
                for mode in ("STATIC FIELD", "RF", "GRADIENT")]))]),
        MRFOVGeometrySequence=Sequence([item(
            InPlanePhaseEncodingDirection="ROW",
            MRAcquisitionFrequencyEncodingSteps=spec.columns,
            MRAcquisitionPhaseEncodingStepsInPlane=spec.rows,
            PercentSampling="100", PercentPhaseFieldOfView="100")]),
        MREchoSequence=Sequence([item(EffectiveEchoTime=contrast.echo_time)]),
        MRModifierSequence=Sequence([item(
            InversionRecovery="NO", FlowCompensation="NONE", T2Preparation="NO",
            SpectrallySelectedExcitation="NONE", SpatialPresaturation="NONE",
            PartialFourier="NO", ParallelAcquisition="NO")]),
        MRImagingModifierSequence=Sequence([item(
            MagnetizationTransfer="NONE", BloodSignalNulling="NO", Tagging="NONE",
            TransmitterFrequency=127.7, PixelBandwidth="200")]),
        MRReceiveCoilSequence=Sequence([item(
            ReceiveCoilName="Head_32", ReceiveCoilManufacturerName="SYNTHETIC",
            ReceiveCoilType="VOLUME", QuadratureReceiveCoil="YES")]),
        MRTransmitCoilSequence=Sequence([item(
            TransmitCoilName="Body", TransmitCoilManufacturerName="SYNTHETIC",
            TransmitCoilType="BODY")]),
        MRAveragesSequence=Sequence([item(NumberOfAverages="1")]),
    )
    if windows:
        shared.FrameVOILUTSequence = Sequence([item(
            WindowCenter=ds_text(windows[0].center), WindowWidth=ds_text(windows[0].width),
            WindowCenterWidthExplanation=windows[0].explanation)])
    return shared


def enhanced_per_frame_groups(spec: SeriesSpec, geometry: Geometry,
                              frame_to_spatial: list[int]) -> list[Dataset]:
    groups = []
    for frame, spatial in enumerate(frame_to_spatial):
        stamp = f"{STUDY_DATE}{series_time(spec, frame)}.000000"
        content = item(
            FrameAcquisitionNumber=frame + 1, FrameReferenceDateTime=stamp,
            FrameAcquisitionDateTime=stamp, FrameAcquisitionDuration=1000.0,
            StackID="1", InStackPositionNumber=spatial + 1,
            DimensionIndexValues=[1, spatial + 1])
        position = item(ImagePositionPatient=[ds_text(v, 4) for v in geometry.positions[spatial]])
        groups.append(item(FrameContentSequence=Sequence([content]),
                           PlanePositionSequence=Sequence([position])))
    return groups


def add_enhanced_mr_image_module(ds: Dataset, spec: SeriesSpec) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ComplexImageComponent = "MAGNITUDE"
    ds.AcquisitionContrast = spec.contrast.name
    ds.AcquisitionNumber = 1
    ds.AcquisitionDateTime = f"{STUDY_DATE}{series_time(spec)}.000000"
    ds.AcquisitionDuration = float(spec.slices)
    ds.ContentQualification = "PRODUCT"
    ds.ResonantNucleus = "1H"
    ds.KSpaceFiltering = "NONE"
    ds.MagneticFieldStrength = "3"
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "INVERSE" if spec.photometric == "MONOCHROME1" else "IDENTITY"


def add_mr_pulse_sequence_module(ds: Dataset, contrast: Contrast) -> None:
    gradient_echo = "GR" in contrast.scanning_sequence
    ds.PulseSequenceName = contrast.sequence_name
    ds.MRAcquisitionType = contrast.acquisition_type
    ds.EchoPulseSequence = "GRADIENT" if gradient_echo else "SPIN"
    ds.MultipleSpinEcho = "NO"
    ds.MultiPlanarExcitation = "NO"
    ds.PhaseContrast = "NO"
    ds.TimeOfFlightContrast = "NO"
    if gradient_echo:  # spoiling only applies to gradient echoes
        ds.Spoiling = "RF"
    ds.SteadyStatePulseSequence = "NONE"
    ds.EchoPlanarPulseSequence = "NO"
    ds.SaturationRecovery = "NO"
    ds.SpectrallySelectedSuppression = "NONE"
    ds.OversamplingPhase = "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.RectilinearPhaseEncodeReordering = "LINEAR"
    ds.SegmentedKSpaceTraversal = "SINGLE"
    if contrast.acquisition_type == "3D":  # k-space coverage is a 3D notion
        ds.CoverageOfKSpace = "FULL"
    ds.NumberOfKSpaceTrajectories = 1


def add_dimensions(ds: Dataset, dimension_uid: str) -> None:
    """Frames are indexed by (StackID, InStackPositionNumber), both in FrameContentSequence."""
    ds.DimensionOrganizationSequence = Sequence([item(DimensionOrganizationUID=dimension_uid)])
    ds.DimensionOrganizationType = "3D"
    frame_content = pydicom.tag.Tag("FrameContentSequence")
    ds.DimensionIndexSequence = Sequence([
        item(DimensionOrganizationUID=dimension_uid,
             DimensionIndexPointer=pydicom.tag.Tag(keyword),
             FunctionalGroupPointer=frame_content, DimensionDescriptionLabel=label)
        for keyword, label in (("StackID", "Stack ID"),
                               ("InStackPositionNumber", "In-Stack Position Number"))])


def multi_frame_dataset(ctx: StudyContext, spec: SeriesSpec, geometry: Geometry,
                        frame_to_spatial: list[int], sop_uid: str,
                        pixels: np.ndarray) -> Dataset:
    ds = Dataset()
    ds.file_meta = file_meta(ENHANCED_MR_IMAGE_STORAGE, sop_uid, spec.transfer_syntax)
    add_common_modules(ds, ctx, spec)
    ds.SOPClassUID = ENHANCED_MR_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = STUDY_DATE
    ds.InstanceCreationTime = series_time(spec, 30)
    add_enhanced_mr_image_module(ds, spec)
    add_mr_pulse_sequence_module(ds, spec.contrast)
    ds.AcquisitionContextSequence = Sequence()
    # Multi-frame Functional Groups and Multi-frame Dimension modules
    ds.InstanceNumber = 1
    ds.ContentDate = STUDY_DATE
    ds.ContentTime = series_time(spec)
    ds.NumberOfFrames = len(frame_to_spatial)
    add_dimensions(ds, ctx.uid("dimension-organization", spec.key))
    ds.SharedFunctionalGroupsSequence = Sequence([enhanced_shared_groups(spec, geometry)])
    ds.PerFrameFunctionalGroupsSequence = Sequence(
        enhanced_per_frame_groups(spec, geometry, frame_to_spatial))
    add_pixel_description(ds, spec)
    attach_pixels(ds, pixels, spec.transfer_syntax)
    return ds


# --------------------------------------------------------------------------------------
# Writing a series
# --------------------------------------------------------------------------------------


def write_dataset(ds: Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def pixel_stats(stored: np.ndarray, spec: SeriesSpec) -> dict:
    """Statistics after the modality LUT, before any window (what `inspect` reports)."""
    slope, intercept = spec.rescale
    real = stored.astype(np.float64) * slope + intercept
    return {"min": float(real.min()), "max": float(real.max()),
            "mean": round(float(real.mean()), 4)}


def file_name(spec: SeriesSpec, instance_number: int, sop_uid: str) -> str:
    if spec.subfolders > 1:
        per_folder = -(-spec.slices // spec.subfolders)
        part, index = divmod(instance_number - 1, per_folder)
        # Each sub-folder numbers its own files from 1, so names repeat across folders.
        return f"part{part + 1}/IM{index + 1:04d}.dcm"
    if spec.file_names == "uid":
        return f"{sop_uid}.dcm"
    return f"IM{instance_number:04d}.dcm"


def write_single_frame_series(ctx: StudyContext, spec: SeriesSpec, geometry: Geometry,
                              stored: np.ndarray, out_dir: Path,
                              expected: dict[str, np.ndarray]) -> list[dict]:
    """One file per slice; returns the manifest's instances in spatial order."""
    numbers = instance_numbers(spec, ctx.seed)
    instances = []
    for spatial in range(spec.slices):
        sop_uid = ctx.uid("sop", spec.key, spatial)
        ds = single_frame_dataset(ctx, spec, geometry, spatial, numbers[spatial], sop_uid,
                                  stored[spatial])
        relative = f"{spec.key}/{file_name(spec, numbers[spatial], sop_uid)}"
        write_dataset(ds, out_dir / relative)
        expected[relative] = stored[spatial]
        instances.append({
            "file": relative, "sop_instance_uid": sop_uid,
            "instance_number": numbers[spatial], "number_of_frames": 1,
            "image_position_patient": [float(v) for v in geometry.positions[spatial]],
            "pixel_stats": pixel_stats(stored[spatial], spec)})
    return instances


def write_multi_frame_series(ctx: StudyContext, spec: SeriesSpec, geometry: Geometry,
                             stored: np.ndarray, out_dir: Path,
                             expected: dict[str, np.ndarray]) -> tuple[list[dict], list]:
    """One Enhanced MR file; returns its manifest instance and the frames in spatial order."""
    frame_to_spatial = list(range(spec.slices))
    if spec.frames_reversed:
        frame_to_spatial.reverse()
    frames = stored[frame_to_spatial]
    sop_uid = ctx.uid("sop", spec.key, "multiframe")
    ds = multi_frame_dataset(ctx, spec, geometry, frame_to_spatial, sop_uid, frames)
    relative = f"{spec.key}/IM0001.dcm"
    write_dataset(ds, out_dir / relative)
    expected[relative] = frames
    instance = {"file": relative, "sop_instance_uid": sop_uid, "instance_number": 1,
                "number_of_frames": spec.slices, "pixel_stats": pixel_stats(frames, spec)}
    spatial_to_frame = {spatial: frame for frame, spatial in enumerate(frame_to_spatial)}
    ordered_frames = [[sop_uid, spatial_to_frame[s]] for s in range(spec.slices)]
    return [instance], ordered_frames


def write_series(ctx: StudyContext, spec: SeriesSpec, template: Template,
                 lesion: Lesion | None, out_dir: Path, expected: dict,
                 brain_masks: Path | None = None) -> dict:
    geometry = build_geometry(spec)
    if brain_masks is not None:
        # ground truth for the brain-mask tests: [slices, rows, columns] in spatial order
        brain_masks.mkdir(parents=True, exist_ok=True)
        masks = np.stack([template.brain(geometry.pixel_points(i))
                          for i in range(len(geometry.positions))]).astype(np.uint8)
        np.save(brain_masks / f"series_{spec.number}.npy", masks)
    rng = np.random.default_rng([ctx.seed, 0x5E1, spec.number])
    stored = to_stored(synthesize_signal(template, geometry, lesion, rng), spec)
    if spec.multiframe:
        instances, ordered_frames = write_multi_frame_series(
            ctx, spec, geometry, stored, out_dir, expected)
    else:
        instances = write_single_frame_series(ctx, spec, geometry, stored, out_dir, expected)
        ordered_frames = [[i["sop_instance_uid"], 0] for i in instances]
    windows = stored_windows(spec)
    slope, intercept = spec.rescale
    return {
        "series_instance_uid": ctx.uid("series", spec.key),
        "series_number": spec.number,
        "description": spec.description,
        "orientation": spec.orientation,
        "transfer_syntax": spec.transfer_syntax,
        "sop_class_uid": ENHANCED_MR_IMAGE_STORAGE if spec.multiframe else MR_IMAGE_STORAGE,
        "photometric_interpretation": spec.photometric,
        "rows": spec.rows,
        "columns": spec.columns,
        "bits_stored": 16 if spec.signed else 12,
        "pixel_representation": 1 if spec.signed else 0,
        "frames_total": spec.slices,
        "multiframe": spec.multiframe,
        "files": sorted(i["file"] for i in instances),
        "ordered_sop_instance_uids": list(dict.fromkeys(uid for uid, _ in ordered_frames)),
        "ordered_frames": ordered_frames,
        "instances": instances,
        "geometry": {
            "row_cosines": [float(v) for v in geometry.row_dir],
            "column_cosines": [float(v) for v in geometry.col_dir],
            "normal": [round(float(v), 9) + 0.0 for v in geometry.normal],  # no -0.0
            "pixel_spacing": list(spec.pixel_spacing),
            "slice_thickness": spec.slice_thickness,
            "spacing_between_slices": spec.slice_spacing,
            "positions_in_spatial_order": [[float(v) for v in p] for p in geometry.positions],
        },
        "window": None if not windows else {
            "center": [w.center for w in windows], "width": [w.width for w in windows],
            "explanation": [w.explanation for w in windows],
            "function": spec.voi_function or "LINEAR"},
        "rescale": {"slope": slope, "intercept": intercept},
        "instance_order": spec.instance_order,
        "lesion": lesion.to_manifest() if lesion is not None else None,
    }


def verify_pixels(out_dir: Path, expected: dict[str, np.ndarray]) -> list[str]:
    """Files whose pixel_array, read back by pydicom, differs from the intended values."""
    failures = []
    for relative, intended in expected.items():
        actual = pydicom.dcmread(out_dir / relative).pixel_array
        if actual.dtype != intended.dtype or not np.array_equal(actual, intended):
            failures.append(f"{relative}: pixel_array {actual.dtype}{actual.shape} differs "
                            f"from the intended {intended.dtype}{intended.shape}")
    return failures


def frame_geometry_from_headers(ds: Dataset) -> list[tuple[list[float], list[float]]]:
    """(ImagePositionPatient, ImageOrientationPatient) per frame, as a reader finds them."""
    if "PerFrameFunctionalGroupsSequence" not in ds:
        return [([float(v) for v in ds.ImagePositionPatient],
                 [float(v) for v in ds.ImageOrientationPatient])]
    shared = ds.SharedFunctionalGroupsSequence[0]
    orientation = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    return [([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient], orientation)
            for frame in ds.PerFrameFunctionalGroupsSequence]


def verify_order(out_dir: Path, series: dict) -> list[str]:
    """Recompute the spatial order from the written headers; compare with the manifest."""
    keyed = []
    for relative in series["files"]:
        ds = pydicom.dcmread(out_dir / relative, stop_before_pixels=True)
        for frame, (position, orientation) in enumerate(frame_geometry_from_headers(ds)):
            normal = np.cross(orientation[:3], orientation[3:])
            keyed.append((float(np.dot(position, normal)), ds.SOPInstanceUID, frame))
    recomputed = [[uid, frame] for _, uid, frame in sorted(keyed)]
    if recomputed != series["ordered_frames"]:
        return [f"series {series['description']}: manifest order differs from the headers"]
    return []


def remove_previous_output(out_dir: Path) -> None:
    """Delete the files an earlier run listed in its manifest, and nothing else, so that a
    rerun with another preset leaves no stale series behind."""
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        return
    try:
        previous = json.loads(manifest_path.read_text())
        files = [f for study in previous["studies"] for series in study["series"]
                 for f in series["files"]]
    except (ValueError, KeyError, TypeError):
        return  # not ours: leave it alone
    folders = set()
    for relative in files:
        path = out_dir / relative
        if path.is_file():
            path.unlink()
        folders.update(p for p in path.parents if out_dir in p.parents)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    manifest_path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", required=True, type=Path, help="MNI152 T1 NIfTI")
    parser.add_argument("--out", required=True, type=Path, help="output study folder")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    parser.add_argument("--seed", type=int, default=0)
    lesion_group = parser.add_mutually_exclusive_group()
    lesion_group.add_argument("--lesion", dest="lesion", action="store_true", default=None,
                              help="plant a tumour-like lesion (default: demo only)")
    lesion_group.add_argument("--no-lesion", dest="lesion", action="store_false")
    parser.add_argument("--brain-masks", type=Path, metavar="DIR",
                        help="also write each series' true intracranial mask (brain and "
                             "CSF inside the skull), [slices, rows, columns] uint8 in spatial "
                             "order, as DIR/series_<number>.npy")
    parser.add_argument("--verify", action="store_true",
                        help="read every file back: pixel_array must equal the intended "
                             "values and the headers must give the manifest's order")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error("--seed must be >= 0")

    template = Template.load(args.template)
    with_lesion = LESION_BY_DEFAULT[args.preset] if args.lesion is None else args.lesion
    ctx = StudyContext(args.preset, args.seed, with_lesion)
    lesion = Lesion.draw(args.seed, template) if with_lesion else None
    remove_previous_output(args.out)
    args.out.mkdir(parents=True, exist_ok=True)

    expected: dict[str, np.ndarray] = {}
    series = [write_series(ctx, spec, template, lesion, args.out, expected, args.brain_masks)
              for spec in PRESETS[args.preset]()]
    manifest = {
        "template_sha256": template.sha256,
        "preset": args.preset,
        "seed": args.seed,
        "order": SPATIAL_ORDER_DEFINITION,
        "coordinates": "DICOM patient LPS, mm; template RAS converted by negating x and y",
        "studies": [{"study_instance_uid": ctx.study_uid,
                     "patient_id": ctx.patient_id,
                     "frame_of_reference_uid": ctx.frame_of_reference_uid,
                     "series": series}],
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")

    if args.verify:
        failures = verify_pixels(args.out, expected)
        for entry in series:
            failures += verify_order(args.out, entry)
        for failure in failures:
            print(f"verify: {failure}", file=sys.stderr)
        if failures:
            return 1
        print(f"verify: {len(expected)} files read back identical, spatial order confirmed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
