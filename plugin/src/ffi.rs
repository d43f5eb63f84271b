//! The part of Orthanc's C plugin SDK (`OrthancCPlugin.h`, SDK 1.10.1) this plugin uses,
//! written by hand.
//!
//! The SDK is one header of `static inline` functions: each fills a small parameter struct
//! and calls `context->InvokeService(context, service, &params)`. There is no library to
//! link and nothing for bindgen to bind but those structs, so the handful used here are
//! declared below, field for field, with the service numbers and enumeration values they
//! need. `tests::matches_the_installed_header` checks every number against the installed
//! header (Debian `orthanc-dev`) when it is present.
//!
//! C enumerations are `int32_t` in this ABI (`OrthancPluginCheckVersionAdvanced` refuses
//! any other size), so they are plain `i32` here.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void};

/// `OrthancPluginErrorCode`.
pub type ErrorCode = i32;
/// `OrthancPluginErrorCode_Success`.
pub const SUCCESS: ErrorCode = 0;
/// `OrthancPluginErrorCode_InternalError`.
pub const INTERNAL_ERROR: ErrorCode = -1;
/// `OrthancPluginErrorCode_Plugin`: an error inside the plugin.
pub const PLUGIN_ERROR: ErrorCode = 1;
/// `OrthancPluginErrorCode_UnknownResource`.
pub const UNKNOWN_RESOURCE: ErrorCode = 17;

/// `_OrthancPluginService` values used.
pub mod service {
    /// `_OrthancPluginService_LogInfo`.
    pub const LOG_INFO: i32 = 1;
    /// `_OrthancPluginService_LogWarning`.
    pub const LOG_WARNING: i32 = 2;
    /// `_OrthancPluginService_LogError`.
    pub const LOG_ERROR: i32 = 3;
    /// `_OrthancPluginService_SetPluginProperty`.
    pub const SET_PLUGIN_PROPERTY: i32 = 7;
    /// `_OrthancPluginService_GetConfiguration`.
    pub const GET_CONFIGURATION: i32 = 13;
    /// `_OrthancPluginService_GetErrorDescription`.
    pub const GET_ERROR_DESCRIPTION: i32 = 17;
    /// `_OrthancPluginService_RegisterOnChangeCallback`.
    pub const REGISTER_ON_CHANGE_CALLBACK: i32 = 1003;
    /// `_OrthancPluginService_RegisterRestCallbackNoLock`.
    pub const REGISTER_REST_CALLBACK_NO_LOCK: i32 = 1004;
    /// `_OrthancPluginService_AnswerBuffer`.
    pub const ANSWER_BUFFER: i32 = 2000;
    /// `_OrthancPluginService_SendMethodNotAllowed`.
    pub const SEND_METHOD_NOT_ALLOWED: i32 = 2005;
    /// `_OrthancPluginService_SendHttpStatus`.
    pub const SEND_HTTP_STATUS: i32 = 2010;
    /// `_OrthancPluginService_RestApiGet`.
    pub const REST_API_GET: i32 = 3001;
    /// `_OrthancPluginService_RestApiPost`.
    pub const REST_API_POST: i32 = 3002;
    /// `_OrthancPluginService_RestApiDelete` (its parameter is the URI itself).
    pub const REST_API_DELETE: i32 = 3003;
}

/// `_OrthancPluginProperty_Description`.
pub const PROPERTY_DESCRIPTION: i32 = 1;

/// `OrthancPluginChangeType` values used.
pub mod change {
    /// `OrthancPluginChangeType_StableStudy`: no new instance in the study for StableAge.
    pub const STABLE_STUDY: i32 = 9;
    /// `OrthancPluginChangeType_OrthancStopped`: Orthanc is stopping.
    pub const ORTHANC_STOPPED: i32 = 11;
}

/// `OrthancPluginResourceType_Study`.
pub const RESOURCE_STUDY: i32 = 1;

/// `OrthancPluginHttpMethod_Get`.
pub const HTTP_GET: i32 = 1;
/// `OrthancPluginHttpMethod_Post`.
pub const HTTP_POST: i32 = 2;

/// `OrthancPluginContext`: what Orthanc hands to `OrthancPluginInitialize`.
#[repr(C)]
pub struct OrthancPluginContext {
    /// Orthanc's own (opaque).
    pub plugins_manager: *mut c_void,
    /// The version of the running Orthanc, e.g. "1.10.1" or "mainline".
    pub orthanc_version: *const c_char,
    /// Frees memory Orthanc allocated (strings, memory buffers).
    pub free: Option<unsafe extern "C" fn(buffer: *mut c_void)>,
    /// The one entry point into the core.
    pub invoke_service: Option<
        unsafe extern "C" fn(
            context: *mut OrthancPluginContext,
            service: i32,
            params: *const c_void,
        ) -> ErrorCode,
    >,
}

/// `OrthancPluginMemoryBuffer`: an answer Orthanc allocated (freed with `free`).
#[repr(C)]
pub struct OrthancPluginMemoryBuffer {
    /// The bytes.
    pub data: *mut c_void,
    /// Their number.
    pub size: u32,
}

/// `OrthancPluginRestOutput` (opaque).
#[repr(C)]
pub struct OrthancPluginRestOutput {
    _opaque: [u8; 0],
}

/// `OrthancPluginHttpRequest`.
#[repr(C)]
pub struct OrthancPluginHttpRequest {
    /// `OrthancPluginHttpMethod`.
    pub method: i32,
    /// Number of groups the path's regular expression captured.
    pub groups_count: u32,
    /// The captured groups.
    pub groups: *const *const c_char,
    /// Number of GET arguments.
    pub get_count: u32,
    /// GET argument names.
    pub get_keys: *const *const c_char,
    /// GET argument values.
    pub get_values: *const *const c_char,
    /// The body (POST, PUT).
    pub body: *const c_void,
    /// Its size.
    pub body_size: u32,
    /// Number of HTTP headers.
    pub headers_count: u32,
    /// Header names.
    pub headers_keys: *const *const c_char,
    /// Header values.
    pub headers_values: *const *const c_char,
}

/// `OrthancPluginRestCallback`.
pub type RestCallback = unsafe extern "C" fn(
    output: *mut OrthancPluginRestOutput,
    url: *const c_char,
    request: *const OrthancPluginHttpRequest,
) -> ErrorCode;

/// `OrthancPluginOnChangeCallback`.
pub type OnChangeCallback = unsafe extern "C" fn(
    change_type: i32,
    resource_type: i32,
    resource_id: *const c_char,
) -> ErrorCode;

/// Parameters of the log services: the message.
pub type LogParams = c_char;

/// `_OrthancPluginSetPluginProperty`.
#[repr(C)]
pub struct SetPluginProperty {
    /// The plugin's name (as `OrthancPluginGetName` returns it).
    pub plugin: *const c_char,
    /// `_OrthancPluginProperty`.
    pub property: i32,
    /// The value.
    pub value: *const c_char,
}

/// `_OrthancPluginRetrieveDynamicString` (GetConfiguration).
#[repr(C)]
pub struct RetrieveDynamicString {
    /// Receives a string to free with `free`.
    pub result: *mut *mut c_char,
    /// Unused by GetConfiguration.
    pub argument: *const c_char,
}

/// `_OrthancPluginGetErrorDescription`.
#[repr(C)]
pub struct GetErrorDescription {
    /// Receives a static string.
    pub target: *mut *const c_char,
    /// The error.
    pub error: ErrorCode,
}

/// `_OrthancPluginOnChangeCallback`.
#[repr(C)]
pub struct RegisterOnChange {
    /// The callback.
    pub callback: OnChangeCallback,
}

/// `_OrthancPluginRestCallback`.
#[repr(C)]
pub struct RegisterRest {
    /// The path's regular expression.
    pub path_regular_expression: *const c_char,
    /// The callback.
    pub callback: RestCallback,
}

/// `_OrthancPluginAnswerBuffer`.
#[repr(C)]
pub struct AnswerBuffer {
    /// The answer being built.
    pub output: *mut OrthancPluginRestOutput,
    /// The body.
    pub answer: *const c_void,
    /// Its size.
    pub answer_size: u32,
    /// Its MIME type.
    pub mime_type: *const c_char,
}

/// `_OrthancPluginOutputPlusArgument` (SendMethodNotAllowed).
#[repr(C)]
pub struct OutputPlusArgument {
    /// The answer being built.
    pub output: *mut OrthancPluginRestOutput,
    /// The allowed methods, e.g. "GET".
    pub argument: *const c_char,
}

/// `_OrthancPluginSendHttpStatus`.
#[repr(C)]
pub struct SendHttpStatus {
    /// The answer being built.
    pub output: *mut OrthancPluginRestOutput,
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: *const c_char,
    /// Its size.
    pub body_size: u32,
}

/// `_OrthancPluginRestApiGet`.
#[repr(C)]
pub struct RestApiGet {
    /// Receives the answer.
    pub target: *mut OrthancPluginMemoryBuffer,
    /// The URI, e.g. "/studies/{id}/series".
    pub uri: *const c_char,
}

/// `_OrthancPluginRestApiPostPut`.
#[repr(C)]
pub struct RestApiPostPut {
    /// Receives the answer.
    pub target: *mut OrthancPluginMemoryBuffer,
    /// The URI, e.g. "/instances".
    pub uri: *const c_char,
    /// The body.
    pub body: *const c_void,
    /// Its size.
    pub body_size: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "/usr/include/orthanc/OrthancCPlugin.h";

    /// The value of `name = N` in the header, when present.
    fn value_in(header: &str, name: &str) -> Option<i32> {
        header.lines().find_map(|line| {
            let line = line.trim();
            let rest = line.strip_prefix(name)?.trim_start();
            let rest = rest.strip_prefix('=')?.trim_start();
            let number: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '-')
                .collect();
            number.parse().ok()
        })
    }

    #[test]
    fn matches_the_installed_header() {
        let Ok(header) = std::fs::read_to_string(HEADER) else {
            eprintln!("{HEADER} is not installed (Debian orthanc-dev); nothing to compare");
            return;
        };
        let expected = [
            ("_OrthancPluginService_LogInfo", service::LOG_INFO),
            ("_OrthancPluginService_LogWarning", service::LOG_WARNING),
            ("_OrthancPluginService_LogError", service::LOG_ERROR),
            (
                "_OrthancPluginService_SetPluginProperty",
                service::SET_PLUGIN_PROPERTY,
            ),
            (
                "_OrthancPluginService_GetConfiguration",
                service::GET_CONFIGURATION,
            ),
            (
                "_OrthancPluginService_GetErrorDescription",
                service::GET_ERROR_DESCRIPTION,
            ),
            (
                "_OrthancPluginService_RegisterOnChangeCallback",
                service::REGISTER_ON_CHANGE_CALLBACK,
            ),
            (
                "_OrthancPluginService_RegisterRestCallbackNoLock",
                service::REGISTER_REST_CALLBACK_NO_LOCK,
            ),
            ("_OrthancPluginService_AnswerBuffer", service::ANSWER_BUFFER),
            (
                "_OrthancPluginService_SendMethodNotAllowed",
                service::SEND_METHOD_NOT_ALLOWED,
            ),
            (
                "_OrthancPluginService_SendHttpStatus",
                service::SEND_HTTP_STATUS,
            ),
            ("_OrthancPluginService_RestApiGet", service::REST_API_GET),
            ("_OrthancPluginService_RestApiPost", service::REST_API_POST),
            (
                "_OrthancPluginService_RestApiDelete",
                service::REST_API_DELETE,
            ),
            ("_OrthancPluginProperty_Description", PROPERTY_DESCRIPTION),
            ("OrthancPluginChangeType_StableStudy", change::STABLE_STUDY),
            (
                "OrthancPluginChangeType_OrthancStopped",
                change::ORTHANC_STOPPED,
            ),
            ("OrthancPluginResourceType_Study", RESOURCE_STUDY),
            ("OrthancPluginHttpMethod_Get", HTTP_GET),
            ("OrthancPluginHttpMethod_Post", HTTP_POST),
            ("OrthancPluginErrorCode_Success", SUCCESS),
            ("OrthancPluginErrorCode_InternalError", INTERNAL_ERROR),
            ("OrthancPluginErrorCode_Plugin", PLUGIN_ERROR),
            ("OrthancPluginErrorCode_UnknownResource", UNKNOWN_RESOURCE),
        ];
        for (name, ours) in expected {
            assert_eq!(value_in(&header, name), Some(ours), "{name}");
        }
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn structs_have_the_c_layout() {
        // the sizes and offsets gcc gives for the SDK's structs on x86_64 and aarch64 Linux
        assert_eq!(std::mem::size_of::<OrthancPluginContext>(), 32);
        assert_eq!(std::mem::size_of::<OrthancPluginMemoryBuffer>(), 16);
        assert_eq!(std::mem::size_of::<OrthancPluginHttpRequest>(), 72);
        assert_eq!(std::mem::offset_of!(OrthancPluginHttpRequest, body), 40);
        assert_eq!(
            std::mem::offset_of!(OrthancPluginHttpRequest, body_size),
            48
        );
        assert_eq!(std::mem::size_of::<SendHttpStatus>(), 32);
        assert_eq!(std::mem::offset_of!(SendHttpStatus, body), 16);
        assert_eq!(std::mem::size_of::<RestApiPostPut>(), 32);
        assert_eq!(std::mem::offset_of!(RestApiPostPut, body_size), 24);
        assert_eq!(std::mem::size_of::<AnswerBuffer>(), 32);
        assert_eq!(std::mem::size_of::<SetPluginProperty>(), 24);
    }
}
