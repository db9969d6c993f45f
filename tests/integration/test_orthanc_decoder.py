# SPDX-License-Identifier: GPL-3.0-or-later
"""What Orthanc's own decoders return through the plugin's OrthancFrameDecoder, inside a
real Orthanc: the stored values of the frame (no rescale), as core's FrameDecoder contract
requires. The test-only probe plugin exposes the decoder at /enhance-test/decode."""
import os
import unittest

import numpy as np
import pydicom

from orthanc_harness import OrthancServer

FILES = "/usr/lib/python3/dist-packages/pydicom/data/test_files"
PROBE = os.environ.get("ENHANCE_DECODER_PROBE", "")


class OrthancDecoderTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.orthanc = OrthancServer(name="PROBE", plugin=False, extra_config={"Plugins": [PROBE]})
        cls.orthanc.start()
        if "enhance-decoder-probe" not in cls.orthanc.get("/plugins"):
            cls.orthanc.cleanup()
            raise AssertionError(f"the probe plugin {PROBE!r} did not load")

    @classmethod
    def tearDownClass(cls):
        cls.orthanc.cleanup()

    def decode(self, name):
        with open(os.path.join(FILES, name), "rb") as f:
            return self.orthanc.post("/enhance-test/decode", f.read())

    def check_stored_values(self, name, signed):
        answer = self.decode(name)
        self.assertNotIn("Error", answer, answer.get("Error"))
        dataset = pydicom.dcmread(os.path.join(FILES, name))
        expected = dataset.pixel_array.astype(np.int64)  # stored values, before any rescale
        self.assertEqual((answer["Rows"], answer["Columns"]), expected.shape)
        self.assertEqual(answer["IsSigned"], signed)
        values = np.array(answer["Values"], dtype=np.int64).reshape(expected.shape)
        np.testing.assert_array_equal(values, expected)

    def test_signed_ct_comes_back_as_stored_values_not_hounsfield_units(self):
        # CT_small: RescaleIntercept -1024; stored 175 at [0, 0] would be -849 HU.
        self.check_stored_values("CT_small.dcm", signed=True)
        self.assertEqual(self.decode("CT_small.dcm")["Values"][0], 175)

    def test_mr_in_every_encoding_orthanc_decodes(self):
        for name in ("MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
                     "MR_small_jpeg_ls_lossless.dcm"):
            with self.subTest(name):
                answer = self.decode(name)
                self.assertNotIn("Error", answer, answer.get("Error"))
                reference = pydicom.dcmread(os.path.join(FILES, "MR_small.dcm")).pixel_array
                self.assertEqual(answer["Values"], reference.astype(np.int64).ravel().tolist())

    def test_twelve_bit_jpeg_comes_back_unsigned(self):
        # Reference values from pydicom's test suite (decoded there with GDCM).
        answer = self.decode("JPGExtended.dcm")
        self.assertNotIn("Error", answer, answer.get("Error"))
        self.assertFalse(answer["IsSigned"])
        values = np.array(answer["Values"]).reshape(answer["Rows"], answer["Columns"])
        self.assertEqual(values[420, 140], 244)
        self.assertEqual(values[230, 120], 95)

    def test_what_orthanc_cannot_decode_gets_an_actionable_error(self):
        # Without a JPEG 2000 decoder plugin (GDCM), Orthanc cannot decode it either.
        answer = self.decode("MR_small_jp2klossless.dcm")
        if "Error" in answer:
            self.assertIn("GDCM plugin", answer["Error"])
        else:
            reference = pydicom.dcmread(os.path.join(FILES, "MR_small.dcm")).pixel_array
            self.assertEqual(answer["Values"], reference.astype(np.int64).ravel().tolist())


if __name__ == "__main__":
    unittest.main()
