//! The C-STORE client (`dicom::store`) against a real receiver: dcmtk's `storescp` (and
//! `dcmqrscp` where the called AE title must be checked), started on a free local port for
//! each test and killed at the end. Received files are compared with the originals.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::receiver::{Receiver, free_port, start, storescp};

use dicom_dictionary_std::{tags, uids};
use dicom_xai::dicom::store::{StoreError, StorePeer, store_files};

/// dcmqrscp knowing only the AE title XAI-TEST: it rejects any other called AE title.
fn dcmqrscp() -> Receiver {
    start("dcmqrscp", |port, out, work| {
        let config = work.join("dcmqrscp.cfg");
        let text = format!(
            "NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 4\n\
             HostTable BEGIN\nHostTable END\nVendorTable BEGIN\nVendorTable END\n\
             AETable BEGIN\nXAI-TEST {} RW (10, 64mb) ANY\nAETable END\n",
            out.display()
        );
        std::fs::write(&config, text).expect("write dcmqrscp.cfg");
        vec![
            "-v".into(),
            "--single-process".into(),
            "-c".into(),
            config.display().to_string(),
            port.to_string(),
        ]
    })
}

/// The pydicom test file `name`.
fn pydicom(name: &str) -> PathBuf {
    common::asset(&format!("pydicom/{name}"))
}

/// The data set bytes of a Part 10 file (after the file meta group), read with the group
/// length, which both pydicom's files and storescp's carry.
fn data_set_bytes(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).expect("readable");
    assert_eq!(&bytes[128..132], b"DICM", "{}", path.display());
    assert_eq!(
        &bytes[132..136],
        &[2, 0, 0, 0],
        "{}: no group length",
        path.display()
    );
    let object = dicom_object::open_file(path).expect("DICOM");
    let start = 132 + 12 + object.meta().information_group_length as usize;
    bytes[start..].to_vec()
}

fn sop_instance(path: &Path) -> String {
    let object = dicom_object::open_file(path).expect("DICOM");
    object
        .element(tags::SOP_INSTANCE_UID)
        .expect("SOP Instance UID")
        .to_str()
        .expect("text")
        .trim_end_matches(['\0', ' '])
        .to_string()
}

/// The received file holding `uid`.
fn received_for(receiver: &Receiver, uid: &str) -> PathBuf {
    receiver
        .received()
        .into_iter()
        .find(|p| sop_instance(p) == uid)
        .unwrap_or_else(|| {
            panic!(
                "{uid} not received; received: {:?}\nlog:\n{}",
                receiver.received(),
                receiver.log()
            )
        })
}

fn assert_all_ok(results: &[Result<(), StoreError>], receiver: &Receiver) {
    for result in results {
        if let Err(error) = result {
            panic!("{error}\nreceiver log:\n{}", receiver.log());
        }
    }
}

#[test]
fn several_files_arrive_unchanged_over_one_association() {
    // bit-preserving, so that what storescp writes is exactly what it received; a small
    // maximum PDU, so that every data set is split into many P-DATA-TF PDUs
    let receiver = storescp(&["+xa", "+B", "-pdu", "4096"]);
    let files: Vec<PathBuf> = [
        "MR_small.dcm",              // MR, explicit VR little endian
        "CT_small.dcm",              // CT, explicit VR little endian, 32 KiB of pixels
        "rtdose.dcm",                // RT Dose, implicit VR little endian
        "JPEG2000.dcm",              // Secondary Capture, JPEG 2000
        "JPEGLSNearLossless_08.dcm", // Secondary Capture, JPEG-LS near-lossless
        "SC_rgb_rle.dcm",            // Secondary Capture, RLE
    ]
    .iter()
    .map(|name| pydicom(name))
    .collect();

    let results = store_files(&receiver.peer("XAI-TEST"), &files);
    assert_eq!(results.len(), files.len());
    assert_all_ok(&results, &receiver);

    assert_eq!(receiver.received().len(), files.len(), "{}", receiver.log());
    for original in &files {
        let uid = sop_instance(original);
        let received = received_for(&receiver, &uid);
        assert!(
            data_set_bytes(original) == data_set_bytes(&received),
            "{}: the received data set differs",
            original.display()
        );
        let before = dicom_object::open_file(original).expect("original");
        let after = dicom_object::open_file(&received).expect("received");
        assert_eq!(
            before.meta().transfer_syntax(),
            after.meta().transfer_syntax()
        );
        assert_eq!(
            before.element(tags::PIXEL_DATA).expect("pixels").value(),
            after.element(tags::PIXEL_DATA).expect("pixels").value(),
            "{}",
            original.display()
        );
    }
    // one association (the readiness probe also shows as "Association Received")
    let log = receiver.log();
    assert_eq!(log.matches("Association Acknowledged").count(), 1, "{log}");
    assert_eq!(
        log.matches("Received Store Request").count(),
        files.len(),
        "{log}"
    );
    assert_eq!(log.matches("Association Release").count(), 1, "{log}");
}

#[test]
fn a_native_file_is_re_encoded_when_only_implicit_le_is_accepted() {
    // storescp accepting Implicit VR Little Endian only
    let receiver = storescp(&["+xi"]);
    let native = pydicom("MR_small.dcm"); // explicit VR little endian
    let compressed = pydicom("JPEG2000.dcm");
    let results = store_files(
        &receiver.peer("XAI-TEST"),
        &[native.clone(), compressed.clone()],
    );

    if let Err(error) = &results[0] {
        panic!("{error}\nreceiver log:\n{}", receiver.log());
    }
    let received = received_for(&receiver, &sop_instance(&native));
    let before = dicom_object::open_file(&native).expect("original");
    let after = dicom_object::open_file(&received).expect("received");
    assert_eq!(
        after.meta().transfer_syntax().trim_end_matches('\0'),
        uids::IMPLICIT_VR_LITTLE_ENDIAN
    );
    for tag in [
        tags::PIXEL_DATA,
        tags::ROWS,
        tags::PATIENT_NAME,
        tags::SOP_CLASS_UID,
    ] {
        assert_eq!(
            before
                .element(tag)
                .expect("original")
                .to_bytes()
                .expect("bytes"),
            after
                .element(tag)
                .expect("received")
                .to_bytes()
                .expect("bytes"),
            "{tag}"
        );
    }

    // compressed data is never converted: no context for JPEG 2000, so that file fails
    let error = results[1].as_ref().expect_err("JPEG 2000 is not accepted");
    assert!(
        matches!(error, StoreError::NoPresentationContext { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    let peer = format!("XAI-TEST@127.0.0.1:{}", receiver.port);
    for part in [
        compressed.display().to_string(),
        peer,
        sop_instance(&compressed),
        "no presentation context".to_string(),
    ] {
        assert!(message.contains(&part), "{message:?} lacks {part:?}");
    }
    assert_eq!(receiver.received().len(), 1);
}

#[test]
fn a_peer_that_is_down_fails_every_file() {
    let port = free_port(); // nobody listens there
    let peer = StorePeer {
        host: "127.0.0.1".to_string(),
        port,
        called_ae: "XAI-TEST".to_string(),
        calling_ae: "XAI-SCU".to_string(),
        timeout: Duration::from_secs(5),
    };
    let files = [pydicom("MR_small.dcm"), pydicom("CT_small.dcm")];
    let results = store_files(&peer, &files);
    assert_eq!(results.len(), 2);
    for (result, file) in results.iter().zip(&files) {
        let error = result.as_ref().expect_err("nobody listens");
        assert!(matches!(error, StoreError::Connect { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains(&format!("XAI-TEST@127.0.0.1:{port}")),
            "{message}"
        );
        assert!(message.contains(&file.display().to_string()), "{message}");
        assert!(message.contains("cannot connect"), "{message}");
    }
}

#[test]
fn a_wrong_called_ae_title_is_rejected() {
    let receiver = dcmqrscp();
    let files = [pydicom("MR_small.dcm"), pydicom("CT_small.dcm")];
    let results = store_files(&receiver.peer("NOT-THE-PACS"), &files);
    assert_eq!(results.len(), 2);
    for (result, file) in results.iter().zip(&files) {
        let error = result.as_ref().expect_err("rejected");
        assert!(
            matches!(error, StoreError::Rejected { .. }),
            "{error:?}\n{}",
            receiver.log()
        );
        let message = error.to_string();
        for part in [
            file.display().to_string(),
            format!("NOT-THE-PACS@127.0.0.1:{}", receiver.port),
            "rejected the association".to_string(),
            "called AE title not recognized".to_string(),
        ] {
            assert!(message.contains(&part), "{message:?} lacks {part:?}");
        }
    }
    // nothing stored (dcmqrscp keeps its index.dat there)
    let stored: Vec<PathBuf> = receiver
        .received()
        .into_iter()
        .filter(|p| p.file_name().is_none_or(|n| n != "index.dat"))
        .collect();
    assert!(stored.is_empty(), "{stored:?}");
}

#[test]
fn a_file_that_is_not_dicom_fails_alone() {
    let receiver = storescp(&["+xa"]);
    let dir = tempfile::tempdir().expect("temporary folder");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a DICOM file, just some notes\n").expect("write");
    let missing = dir.path().join("gone.dcm");
    let files = [
        pydicom("MR_small.dcm"),
        text.clone(),
        pydicom("CT_small.dcm"),
        missing.clone(),
    ];

    let results = store_files(&receiver.peer("XAI-TEST"), &files);
    assert_eq!(results.len(), 4);
    for index in [0, 2] {
        if let Err(error) = &results[index] {
            panic!("{error}\nreceiver log:\n{}", receiver.log());
        }
    }
    for (index, bad) in [(1, &text), (3, &missing)] {
        let error = results[index].as_ref().expect_err("not DICOM");
        assert!(matches!(error, StoreError::Unreadable { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(&bad.display().to_string()), "{message}");
        assert!(
            message.contains(&format!("XAI-TEST@127.0.0.1:{}", receiver.port)),
            "{message}"
        );
    }
    assert_eq!(receiver.received().len(), 2, "{}", receiver.log());
}

#[test]
fn a_peer_that_aborts_mid_transfer_fails_the_file_and_the_rest() {
    let receiver = storescp(&["+xa", "--abort-during"]);
    let files = [pydicom("CT_small.dcm"), pydicom("MR_small.dcm")];
    let results = store_files(&receiver.peer("XAI-TEST"), &files);
    assert_eq!(results.len(), 2);

    let first = results[0].as_ref().expect_err("aborted");
    assert!(matches!(first, StoreError::Transfer { .. }), "{first:?}");
    let message = first.to_string();
    assert!(
        message.contains(&files[0].display().to_string()),
        "{message}"
    );
    assert!(message.contains(&sop_instance(&files[0])), "{message}");
    assert!(
        message.contains(&format!("XAI-TEST@127.0.0.1:{}", receiver.port)),
        "{message}"
    );

    let second = results[1].as_ref().expect_err("never sent");
    assert!(matches!(second, StoreError::NotSent { .. }), "{second:?}");
    assert!(second.to_string().contains(&files[1].display().to_string()));
}
