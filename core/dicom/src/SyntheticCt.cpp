// SPDX-License-Identifier: GPL-3.0-or-later
#include "SyntheticCt.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcvrcs.h>

#include "DicomUtil.h"
#include "enhance/base/Error.h"

namespace enhance {
namespace {

// What a CT object may inherit from its MR source: the patient, the study and the place
// in it, the frame of reference (so the CT registers with the MR), the equipment and
// image plane. Everything MR-specific (sequence parameters, contrast, protocol, operator,
// performed procedure step) describes an acquisition this object did not have.
const DcmTagKey kInherited[] = {
    // SOP Common
    DCM_SpecificCharacterSet, DCM_TimezoneOffsetFromUTC, DCM_ContributingEquipmentSequence,
    // Patient
    DCM_PatientName, DCM_PatientID, DCM_IssuerOfPatientID, DCM_IssuerOfPatientIDQualifiersSequence,
    DCM_TypeOfPatientID, DCM_PatientBirthDate, DCM_PatientBirthTime, DCM_PatientSex,
    DCM_OtherPatientIDsSequence, DCM_OtherPatientNames, DCM_EthnicGroup, DCM_PatientComments,
    DCM_PatientSpeciesDescription, DCM_PatientSpeciesCodeSequence, DCM_PatientBreedDescription,
    DCM_PatientBreedCodeSequence, DCM_StrainDescription, DCM_ResponsiblePerson,
    DCM_ResponsiblePersonRole, DCM_ResponsibleOrganization, DCM_PatientIdentityRemoved,
    DCM_DeidentificationMethod, DCM_DeidentificationMethodCodeSequence, DCM_QualityControlSubject,
    // Clinical Trial Subject and Study
    DCM_ClinicalTrialSponsorName, DCM_ClinicalTrialProtocolID, DCM_ClinicalTrialProtocolName,
    DCM_ClinicalTrialSiteID, DCM_ClinicalTrialSiteName, DCM_ClinicalTrialSubjectID,
    DCM_ClinicalTrialSubjectReadingID, DCM_ClinicalTrialTimePointID,
    DCM_ClinicalTrialTimePointDescription, DCM_ClinicalTrialCoordinatingCenterName,
    // General Study
    DCM_StudyInstanceUID, DCM_StudyDate, DCM_StudyTime, DCM_ReferringPhysicianName,
    DCM_ReferringPhysicianIdentificationSequence, DCM_ConsultingPhysicianName, DCM_StudyID,
    DCM_AccessionNumber, DCM_IssuerOfAccessionNumberSequence, DCM_StudyDescription,
    DCM_PhysiciansOfRecord, DCM_PhysiciansOfRecordIdentificationSequence,
    DCM_NameOfPhysiciansReadingStudy, DCM_ProcedureCodeSequence,
    DCM_ReasonForPerformedProcedureCodeSequence, DCM_RequestingService, DCM_ReferencedStudySequence,
    // Patient Study
    DCM_AdmittingDiagnosesDescription, DCM_AdmittingDiagnosesCodeSequence, DCM_PatientAge,
    DCM_PatientSize, DCM_PatientSizeCodeSequence, DCM_PatientWeight, DCM_Occupation,
    DCM_AdditionalPatientHistory, DCM_AdmissionID, DCM_IssuerOfAdmissionIDSequence,
    DCM_PatientSexNeutered, DCM_MedicalAlerts, DCM_Allergies, DCM_SmokingStatus,
    DCM_PregnancyStatus, DCM_LastMenstrualDate, DCM_PatientState,
    // General Series: what describes the patient, not the acquisition
    DCM_SeriesNumber, DCM_SeriesDescription, DCM_Laterality, DCM_BodyPartExamined,
    DCM_PatientPosition, DCM_AnatomicalOrientationType,
    // Frame of Reference
    DCM_FrameOfReferenceUID, DCM_PositionReferenceIndicator,
    // General Equipment
    DCM_Manufacturer, DCM_InstitutionName, DCM_InstitutionAddress, DCM_StationName,
    DCM_InstitutionalDepartmentName, DCM_InstitutionalDepartmentTypeCodeSequence,
    DCM_ManufacturerModelName, DCM_DeviceSerialNumber, DCM_SoftwareVersions, DCM_UDISequence,
    // General Image and Image Plane
    DCM_PatientOrientation, DCM_AcquisitionNumber, DCM_LossyImageCompression,
    DCM_LossyImageCompressionRatio, DCM_LossyImageCompressionMethod, DCM_PixelSpacing,
    DCM_ImageOrientationPatient, DCM_ImagePositionPatient, DCM_SliceThickness, DCM_SliceLocation,
    DCM_BurnedInAnnotation};

// Type 2 attributes of the CT Image IOD: present, empty when unknown.
const DcmTagKey kRequiredEvenIfEmpty[] = {
    DCM_PatientName,    DCM_PatientID,       DCM_PatientBirthDate,
    DCM_PatientSex,     DCM_StudyDate,       DCM_StudyTime,
    DCM_StudyID,        DCM_AccessionNumber, DCM_ReferringPhysicianName,
    DCM_SeriesNumber,   DCM_Manufacturer,    DCM_PositionReferenceIndicator,
    DCM_SliceThickness, DCM_PatientPosition, DCM_AcquisitionNumber};

// Synthetic Data (0008,001C), SOP Common Module (PS3.3 C.12.1). Newer than the data
// dictionaries of DCMTK 3.6.7, so its VR is given here.
const DcmTagKey kSyntheticData(0x0008, 0x001C);

void PutSyntheticDataYes(DcmDataset& ds) {
  auto element = std::make_unique<DcmCodeString>(DcmTag(kSyntheticData, EVR_CS));
  if (element->putString("YES").bad() || ds.insert(element.get(), OFTrue).bad()) {
    throw Error(ErrorKind::kInternal, "cannot write Synthetic Data (0008,001C)");
  }
  element.release();  // owned by the dataset now
}

}  // namespace

std::unique_ptr<DcmDataset> SyntheticCtTemplate(DcmDataset& source) {
  auto ds = std::make_unique<DcmDataset>();
  for (const DcmTagKey& tag : kInherited) {
    DcmElement* copy = nullptr;
    if (source.findAndGetElement(tag, copy, OFFalse, OFTrue /* copy */).good() && copy) {
      if (ds->insert(copy, OFTrue).bad()) {
        delete copy;
        throw Error(ErrorKind::kInternal,
                    std::string("cannot copy ") + DcmTag(tag).getTagName() + " into synthetic CT");
      }
    }
  }
  for (const DcmTagKey& tag : kRequiredEvenIfEmpty) {
    if (!ds->tagExists(tag)) PutString(*ds, tag, "");
  }
  // Laterality (Type 2C) is required of a paired body part unless Image Laterality is sent,
  // and not allowed otherwise. When the MR does not say which part was imaged, the part
  // may be paired: present, from the MR's Image Laterality (which a synthetic CT does not
  // inherit) or empty.
  OFString bodyPart;
  if (!ds->tagExists(DCM_Laterality) &&
      (ds->findAndGetOFString(DCM_BodyPartExamined, bodyPart).bad() || bodyPart.empty())) {
    OFString imageLaterality;
    source.findAndGetOFString(DCM_ImageLaterality, imageLaterality);
    PutString(*ds, DCM_Laterality,
              imageLaterality == "L" || imageLaterality == "R" ? imageLaterality.c_str() : "");
  }

  PutString(*ds, DCM_SOPClassUID, UID_CTImageStorage);
  PutString(*ds, DCM_Modality, "CT");
  PutSyntheticDataYes(*ds);
  // CT Image Module: the usual scanner encoding of [-1024, 3071] HU in 12 bits.
  PutString(*ds, DCM_ImageType, "DERIVED\\SECONDARY\\AXIAL");
  PutString(*ds, DCM_RescaleIntercept, FormatDecimal(kSyntheticCtMinHu));
  PutString(*ds, DCM_RescaleSlope, "1");
  PutString(*ds, DCM_RescaleType, "HU");
  PutString(*ds, DCM_KVP, "");  // Type 2: no X-rays were involved
  // VOI LUT: the MR's windows are in MR units; these are the usual CT presets.
  PutString(*ds, DCM_WindowCenter, "40\\400");
  PutString(*ds, DCM_WindowWidth, "400\\1800");
  PutString(*ds, DCM_WindowCenterWidthExplanation, "SOFT TISSUE\\BONE");
  return ds;
}

}  // namespace enhance
