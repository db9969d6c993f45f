#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Writes axial slices of a NIfTI-1 T1-weighted head volume (e.g. mricron-data's
/usr/share/mricron/templates/ch2.nii.gz) as an MR Image Storage series, one DICOM file
per slice, for the demo. Integer or float voxels are scaled to 12-bit unsigned values.
The orientation is taken as RAS with axis-aligned voxels (qform/sform are not read).

usage: nifti_to_dicom_mr.py NIFTI OUT_DIR [--first K] [--count N] [--size N] [--rician SIGMA]
                            [--seed S] [--patient-id ID]
"""
import argparse
import datetime
import gzip
import os
import struct

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4"}


def read_nifti(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    endian = "<" if struct.unpack("<i", data[:4])[0] == 348 else ">"
    dim = struct.unpack(endian + "8h", data[40:56])
    datatype = struct.unpack(endian + "h", data[70:72])[0]
    pixdim = struct.unpack(endian + "8f", data[76:108])
    offset = int(struct.unpack(endian + "f", data[108:112])[0])
    slope, inter = struct.unpack(endian + "2f", data[112:120])
    if datatype not in DTYPES:
        raise SystemExit(f"{path}: NIfTI data type {datatype} is not supported")
    count = dim[1] * dim[2] * dim[3]
    voxels = np.frombuffer(data, dtype=endian + DTYPES[datatype], count=count, offset=offset)
    volume = voxels.reshape(dim[3], dim[2], dim[1]).astype(np.float64)
    if slope not in (0.0, 1.0):
        volume = volume * slope + inter
    return volume, (pixdim[1], pixdim[2], pixdim[3])


def centred(volume, size):
    """Each slice padded with zeros or cropped to size x size about its centre."""
    out = np.zeros((volume.shape[0], size, size), dtype=volume.dtype)
    spans = []
    for n in volume.shape[1:]:
        if n <= size:
            spans.append((slice(0, n), slice((size - n) // 2, (size - n) // 2 + n)))
        else:
            spans.append((slice((n - size) // 2, (n - size) // 2 + size), slice(0, size)))
    (rows_in, rows_out), (columns_in, columns_out) = spans
    out[:, rows_out, columns_out] = volume[:, rows_in, columns_in]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("nifti")
    parser.add_argument("out")
    parser.add_argument("--first", type=int, default=None, help="first axial slice (default: centred)")
    parser.add_argument("--count", type=int, default=24, help="number of slices (default 24)")
    parser.add_argument("--size", type=int, default=None,
                        help="an N x N matrix: the slices padded with background (or cropped) "
                             "about their centre, at the same spacing")
    parser.add_argument("--rician", type=float, default=0.0,
                        help="Rician noise of this deviation, a fraction of the 99.9th "
                             "percentile (magnitude of the image plus complex Gaussian noise)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the noise")
    parser.add_argument("--patient-id", default="ENH-MR-001")
    parser.add_argument("--patient-name", default="PHANTOM^MR")
    args = parser.parse_args()

    volume, (dx, dy, dz) = read_nifti(args.nifti)
    count = min(args.count, volume.shape[0])
    first = args.first if args.first is not None else (volume.shape[0] - count) // 2
    volume = volume[first:first + count]
    # RAS voxels -> DICOM's LPS display: first row anterior, first column patient right.
    volume = volume[:, ::-1, ::-1]
    if args.size is not None:
        volume = centred(volume, args.size)
    top = np.percentile(volume, 99.9)
    if args.rician > 0:
        rng = np.random.default_rng(args.seed)
        sigma = args.rician * top
        volume = np.hypot(volume + rng.normal(0.0, sigma, volume.shape),
                          rng.normal(0.0, sigma, volume.shape))
    pixels = np.clip(np.rint(volume / max(top, 1e-6) * 4000.0), 0, 4095).astype(np.uint16)

    os.makedirs(args.out, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    now = datetime.datetime.now()
    rows, columns = pixels.shape[1], pixels.shape[2]
    for k in range(count):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.SOPClassUID = MR_IMAGE_STORAGE
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientID, ds.PatientName = args.patient_id, args.patient_name
        ds.PatientBirthDate, ds.PatientSex = "", "O"
        ds.StudyDate = ds.SeriesDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = now.strftime("%H%M%S")
        ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "", "", "1"
        ds.Modality, ds.Manufacturer = "MR", "Orthanc Enhance demo"
        ds.StudyDescription = "Head MR (mricron-data template)"
        ds.SeriesDescription = "T1 axial " + os.path.basename(args.nifti).split(".")[0]
        ds.SeriesNumber, ds.InstanceNumber = 3, k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "GR", "SP", ""
        ds.MRAcquisitionType = "3D"
        # A T1-weighted 3D gradient echo's parameters (the template's are not recorded).
        ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = "8.1", "3.7", 1
        ds.Laterality, ds.PatientPosition, ds.PositionReferenceIndicator = "", "HFS", ""
        ds.PixelSpacing = [f"{dy:g}", f"{dx:g}"]
        ds.SliceThickness = ds.SpacingBetweenSlices = f"{dz:g}"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        x0 = -(columns - 1) / 2 * dx
        y0 = -(rows - 1) / 2 * dy
        ds.ImagePositionPatient = [f"{x0:.3f}", f"{y0:.3f}", f"{(first + k) * dz:.3f}"]
        ds.SliceLocation = f"{(first + k) * dz:.3f}"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = rows, columns
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.ascontiguousarray(pixels[k]).tobytes()
        ds.save_as(os.path.join(args.out, f"MR{k + 1:04d}.dcm"), write_like_original=False)
    print(f"wrote {count} MR slices of {rows}x{columns} to {args.out}")


if __name__ == "__main__":
    main()
