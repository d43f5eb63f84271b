//! The plugin's REST routes, under Orthanc's own HTTP server (and its authentication):
//!
//! - `GET /dicom-xai/status`: the engine's state, counts per job state, and each study's
//!   latest job (queued, running, done or failed with its reason), most recent first.
//! - `GET /dicom-xai/studies/{id}/report`: the `report.json` of a study (`{id}` is
//!   Orthanc's study ID); 404 while it has none.
//! - `POST /dicom-xai/studies/{id}/process`: queues a study now, every series redone
//!   (studies stored before the plugin was enabled, or after a change of rules).
//!
//! Routes are registered without Orthanc's global lock: they only read the job board and
//! files, so they answer while a study is being processed.

use std::ffi::{CStr, c_char};
use std::sync::Arc;

use crate::ffi::{self, ErrorCode, OrthancPluginHttpRequest, OrthancPluginRestOutput};
use crate::orthanc::{self, Output};
use crate::{Shared, guarded, shared};

/// `/dicom-xai/status`.
pub const STATUS: &CStr = c"/dicom-xai/status";
/// `/dicom-xai/studies/{id}/report`.
pub const REPORT: &CStr = c"/dicom-xai/studies/([^/]+)/report";
/// `/dicom-xai/studies/{id}/process`.
pub const PROCESS: &CStr = c"/dicom-xai/studies/([^/]+)/process";

const JSON: &CStr = c"application/json";

/// An answer to send.
enum Reply {
    Json(Vec<u8>),
    Error(u16, String),
    NotAllowed(&'static CStr),
}

/// Sends `reply`; Orthanc's error code for the callback.
fn send(output: *mut OrthancPluginRestOutput, reply: Reply) -> ErrorCode {
    let output = Output::new(output);
    let sent = match reply {
        Reply::Json(body) => output.answer(&body, JSON),
        Reply::Error(status, message) => {
            let body = serde_json::json!({ "error": message }).to_string();
            output.status(status, &body)
        }
        Reply::NotAllowed(allowed) => output.method_not_allowed(allowed),
    };
    match sent {
        Ok(()) => ffi::SUCCESS,
        Err(error) => {
            tracing::warn!("cannot answer a REST request: {error}");
            ffi::PLUGIN_ERROR
        }
    }
}

/// The request's method and its first captured group.
///
/// # Safety
/// `request` is the pointer Orthanc passed to the callback.
unsafe fn read_request(request: *const OrthancPluginHttpRequest) -> (i32, Option<String>) {
    // SAFETY: Orthanc passes a valid request for the duration of the callback.
    let Some(request) = (unsafe { request.as_ref() }) else {
        return (0, None);
    };
    let group = if request.groups_count >= 1 && !request.groups.is_null() {
        // SAFETY: `groups` holds `groups_count` NUL-terminated strings.
        let first = unsafe { *request.groups };
        (!first.is_null())
            // SAFETY: as above.
            .then(|| {
                unsafe { CStr::from_ptr(first) }
                    .to_string_lossy()
                    .into_owned()
            })
    } else {
        None
    };
    (request.method, group)
}

/// `GET /dicom-xai/status`.
///
/// # Safety
/// Called by Orthanc with the pointers of one REST request.
pub unsafe extern "C" fn status(
    output: *mut OrthancPluginRestOutput,
    _url: *const c_char,
    request: *const OrthancPluginHttpRequest,
) -> ErrorCode {
    guarded("GET /dicom-xai/status", ffi::PLUGIN_ERROR, || {
        // SAFETY: the pointer Orthanc passed.
        let (method, _) = unsafe { read_request(request) };
        let reply = if method == ffi::HTTP_GET {
            Reply::Json(status_json(shared().as_deref()).to_string().into_bytes())
        } else {
            Reply::NotAllowed(c"GET")
        };
        send(output, reply)
    })
}

/// The status page.
fn status_json(shared: Option<&Shared>) -> serde_json::Value {
    let mut value = match shared {
        Some(shared) => {
            let mut value = shared.jobs.status();
            value["enabled"] = shared.enabled.into();
            value["config"] = shared
                .config
                .as_ref()
                .map(|p| p.display().to_string())
                .into();
            value["out"] = shared.out.as_ref().map(|p| p.display().to_string()).into();
            if let Some(problem) = &shared.problem {
                value["problem"] = problem.clone().into();
            }
            value
        }
        None => serde_json::json!({ "enabled": false }),
    };
    value["plugin"] = "dicom-xai".into();
    value["version"] = env!("CARGO_PKG_VERSION").into();
    value
}

/// `GET /dicom-xai/studies/{id}/report`.
///
/// # Safety
/// Called by Orthanc with the pointers of one REST request.
pub unsafe extern "C" fn report(
    output: *mut OrthancPluginRestOutput,
    _url: *const c_char,
    request: *const OrthancPluginHttpRequest,
) -> ErrorCode {
    guarded(
        "GET /dicom-xai/studies/{id}/report",
        ffi::PLUGIN_ERROR,
        || {
            // SAFETY: the pointer Orthanc passed.
            let (method, id) = unsafe { read_request(request) };
            let reply = if method != ffi::HTTP_GET {
                Reply::NotAllowed(c"GET")
            } else {
                match (shared(), id) {
                    (Some(shared), Some(id)) => report_of(&shared, &id),
                    _ => Reply::Error(503, "the dicom-xai plugin is not active".into()),
                }
            };
            send(output, reply)
        },
    )
}

fn report_of(shared: &Shared, id: &str) -> Reply {
    if !is_orthanc_id(id) {
        return Reply::Error(400, format!("{id:?} is not an Orthanc study ID"));
    }
    let Some(out) = &shared.out else {
        return Reply::Error(503, "the dicom-xai plugin is not active".into());
    };
    let uid = match shared.jobs.study_uid(id) {
        Some(uid) => uid,
        None => match study_uid(id) {
            Ok(uid) => uid,
            Err(reply) => return reply,
        },
    };
    let path = match dicom_xai::output::study_dir(out, &uid) {
        Ok(dir) => dir.join("report.json"),
        Err(invalid) => {
            return Reply::Error(500, format!("study {id}: StudyInstanceUID {invalid}"));
        }
    };
    match std::fs::read(&path) {
        Ok(bytes) => Reply::Json(bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Reply::Error(
            404,
            format!(
                "study {id} ({uid}) has no report yet: it is processed once it is stable \
                 (see /dicom-xai/status)"
            ),
        ),
        Err(error) => Reply::Error(500, format!("{}: {error}", path.display())),
    }
}

/// The StudyInstanceUID of an Orthanc study.
fn study_uid(id: &str) -> Result<String, Reply> {
    let bytes = orthanc::rest_get(&format!("/studies/{id}")).map_err(|e| {
        if e.is_unknown_resource() {
            Reply::Error(404, format!("there is no study {id} in Orthanc"))
        } else {
            Reply::Error(500, format!("study {id}: cannot read it from Orthanc: {e}"))
        }
    })?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            v["MainDicomTags"]["StudyInstanceUID"]
                .as_str()
                .map(str::to_string)
        })
        .ok_or_else(|| {
            Reply::Error(
                500,
                format!("study {id}: Orthanc gives no StudyInstanceUID"),
            )
        })
}

/// `POST /dicom-xai/studies/{id}/process`.
///
/// # Safety
/// Called by Orthanc with the pointers of one REST request.
pub unsafe extern "C" fn process(
    output: *mut OrthancPluginRestOutput,
    _url: *const c_char,
    request: *const OrthancPluginHttpRequest,
) -> ErrorCode {
    guarded(
        "POST /dicom-xai/studies/{id}/process",
        ffi::PLUGIN_ERROR,
        || {
            // SAFETY: the pointer Orthanc passed.
            let (method, id) = unsafe { read_request(request) };
            let reply = if method != ffi::HTTP_POST {
                Reply::NotAllowed(c"POST")
            } else {
                match (shared(), id) {
                    (Some(shared), Some(id)) if shared.enabled => queue(&shared, &id),
                    _ => Reply::Error(503, "the dicom-xai plugin is not active".into()),
                }
            };
            send(output, reply)
        },
    )
}

fn queue(shared: &Arc<Shared>, id: &str) -> Reply {
    if !is_orthanc_id(id) {
        return Reply::Error(400, format!("{id:?} is not an Orthanc study ID"));
    }
    if let Err(reply) = study_uid(id) {
        return reply;
    }
    shared.jobs.forget(id);
    if !shared.jobs.enqueue(id) {
        return Reply::Error(503, "Orthanc is stopping".into());
    }
    tracing::info!(study = %id, "queued on request");
    Reply::Json(
        serde_json::json!({ "study": id, "state": "queued" })
            .to_string()
            .into_bytes(),
    )
}

/// Orthanc's IDs: five groups of eight hexadecimal digits joined by dashes.
fn is_orthanc_id(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .all(|g| g.len() == 8 && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A DICOM UID (digits and dots, at most 64 characters): safe as a folder name.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orthanc_ids_are_checked_before_use() {
        assert!(is_orthanc_id(
            "220d49ca-18f1349d-40f66770-ad2efa17-3d48cbb8"
        ));
        assert!(!is_orthanc_id("../../etc"));
        assert!(!is_orthanc_id("220d49ca-18f1349d-40f66770-ad2efa17"));
    }

    #[test]
    fn the_status_of_an_inactive_plugin_says_so() {
        let value = status_json(None);
        assert_eq!(value["enabled"], false);
        assert_eq!(value["plugin"], "dicom-xai");
    }
}
