//! Safe calls into Orthanc, through the context `OrthancPluginInitialize` received.
//!
//! The context sits behind a process-wide gate: [`open`] sets it, [`close`] (from
//! `OrthancPluginFinalize`) clears it after every call in flight has returned, and any call
//! made later (by a worker abandoned at shutdown, say) fails with [`CallError::Closed`]
//! instead of touching an Orthanc that is going away. Orthanc's services may be called
//! from any thread; the gate only ever blocks while `close` waits.

use std::ffi::{CStr, CString, c_char, c_void};
use std::fmt;
use std::sync::{PoisonError, RwLock};

use crate::ffi::{self, OrthancPluginContext, OrthancPluginRestOutput, service};

/// The context pointer; Orthanc's services are thread-safe.
struct Context(*mut OrthancPluginContext);

// SAFETY: the SDK allows its services to be called from any thread; the pointer is only
// dereferenced while the gate is open, i.e. between Initialize and Finalize.
unsafe impl Send for Context {}
// SAFETY: as above; the context itself is never written through.
unsafe impl Sync for Context {}

static CONTEXT: RwLock<Option<Context>> = RwLock::new(None);

/// Why a call into Orthanc failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The plugin was finalized: Orthanc is stopping.
    Closed,
    /// Orthanc answered with an error code.
    Orthanc {
        /// `OrthancPluginErrorCode`.
        code: i32,
        /// Orthanc's description of it.
        description: String,
    },
    /// The request could not be expressed (a NUL in a URI, a body over 4 GiB).
    Invalid(String),
}

impl CallError {
    /// Orthanc does not know the resource (HTTP 404).
    pub fn is_unknown_resource(&self) -> bool {
        matches!(self, CallError::Orthanc { code, .. } if *code == ffi::UNKNOWN_RESOURCE)
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Closed => write!(f, "Orthanc is stopping"),
            CallError::Orthanc { code, description } => {
                write!(f, "{description} (Orthanc error {code})")
            }
            CallError::Invalid(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for CallError {}

/// Opens the gate on `context` (`OrthancPluginInitialize`).
pub fn open(context: *mut OrthancPluginContext) {
    *CONTEXT.write().unwrap_or_else(PoisonError::into_inner) = Some(Context(context));
}

/// Closes the gate (`OrthancPluginFinalize`): waits for calls in flight, then refuses more.
pub fn close() {
    *CONTEXT.write().unwrap_or_else(PoisonError::into_inner) = None;
}

/// Runs `f` with the context while the gate is open.
fn with_context<T>(
    f: impl FnOnce(&OrthancPluginContext, *mut OrthancPluginContext) -> Result<T, CallError>,
) -> Result<T, CallError> {
    let guard = CONTEXT.read().unwrap_or_else(PoisonError::into_inner);
    let context = guard.as_ref().ok_or(CallError::Closed)?;
    // SAFETY: Orthanc keeps the context alive from Initialize to Finalize, and Finalize
    // closes the gate (waiting for this read guard) before it returns.
    let reference = unsafe { &*context.0 };
    f(reference, context.0)
}

/// Calls one service; `params` points at the service's parameter struct.
///
/// # Safety
/// `params` must point at the struct `service` expects, valid for the call.
unsafe fn invoke(
    context: &OrthancPluginContext,
    pointer: *mut OrthancPluginContext,
    service: i32,
    params: *const c_void,
) -> Result<(), CallError> {
    let Some(invoke_service) = context.invoke_service else {
        return Err(CallError::Invalid("Orthanc gave no InvokeService".into()));
    };
    // SAFETY: the caller guarantees `params`; the context is Orthanc's own.
    let code = unsafe { invoke_service(pointer, service, params) };
    if code == ffi::SUCCESS {
        Ok(())
    } else {
        Err(CallError::Orthanc {
            code,
            description: describe(context, pointer, code),
        })
    }
}

/// Orthanc's description of an error code.
fn describe(
    context: &OrthancPluginContext,
    pointer: *mut OrthancPluginContext,
    code: i32,
) -> String {
    let mut target: *const c_char = std::ptr::null();
    let params = ffi::GetErrorDescription {
        target: &mut target,
        error: code,
    };
    let found = context.invoke_service.is_some_and(|invoke_service| {
        // SAFETY: GetErrorDescription takes this struct; it writes a static string.
        let code = unsafe {
            invoke_service(
                pointer,
                service::GET_ERROR_DESCRIPTION,
                (&raw const params).cast(),
            )
        };
        code == ffi::SUCCESS
    });
    if found && !target.is_null() {
        // SAFETY: Orthanc returned a NUL-terminated static string.
        unsafe { CStr::from_ptr(target) }
            .to_string_lossy()
            .into_owned()
    } else {
        "unknown error".into()
    }
}

/// A C string from text that might hold NULs (they become spaces).
fn c_text(text: &str) -> CString {
    CString::new(text.replace('\0', " ")).unwrap_or_default()
}

/// Frees memory Orthanc allocated.
fn free(context: &OrthancPluginContext, data: *mut c_void) {
    if let Some(free) = context.free
        && !data.is_null()
    {
        // SAFETY: `data` came from Orthanc and is freed once.
        unsafe { free(data) }
    }
}

/// The version of the running Orthanc ("1.10.1", "mainline"), while the gate is open.
pub fn version() -> Option<String> {
    with_context(|context, _| {
        if context.orthanc_version.is_null() {
            return Ok(None);
        }
        // SAFETY: Orthanc's version is a NUL-terminated string it owns.
        let text = unsafe { CStr::from_ptr(context.orthanc_version) };
        Ok(Some(text.to_string_lossy().into_owned()))
    })
    .ok()
    .flatten()
}

/// The severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `OrthancPluginLogInfo` (shown with `--verbose`).
    Info,
    /// `OrthancPluginLogWarning`.
    Warning,
    /// `OrthancPluginLogError`.
    Error,
}

/// Logs one line in Orthanc's log; on standard error once the gate is closed.
pub fn log(level: Level, message: &str) {
    let text = c_text(message);
    let logged = with_context(|context, pointer| {
        let service = match level {
            Level::Info => service::LOG_INFO,
            Level::Warning => service::LOG_WARNING,
            Level::Error => service::LOG_ERROR,
        };
        // SAFETY: the log services take the message itself.
        unsafe { invoke(context, pointer, service, text.as_ptr().cast()) }
    });
    if logged.is_err() {
        eprintln!("{message}");
    }
}

/// Orthanc's whole configuration, as JSON.
pub fn configuration() -> Result<String, CallError> {
    with_context(|context, pointer| {
        let mut result: *mut c_char = std::ptr::null_mut();
        let params = ffi::RetrieveDynamicString {
            result: &mut result,
            argument: std::ptr::null(),
        };
        // SAFETY: GetConfiguration takes this struct and returns a string to free.
        unsafe {
            invoke(
                context,
                pointer,
                service::GET_CONFIGURATION,
                (&raw const params).cast(),
            )?
        };
        if result.is_null() {
            return Err(CallError::Invalid(
                "Orthanc returned no configuration".into(),
            ));
        }
        // SAFETY: a NUL-terminated string Orthanc allocated.
        let text = unsafe { CStr::from_ptr(result) }
            .to_string_lossy()
            .into_owned();
        free(context, result.cast());
        Ok(text)
    })
}

/// Sets the description Orthanc shows for the plugin (`/plugins/{name}`).
pub fn set_description(plugin: &'static CStr, description: &str) -> Result<(), CallError> {
    let value = c_text(description);
    with_context(|context, pointer| {
        let params = ffi::SetPluginProperty {
            plugin: plugin.as_ptr(),
            property: ffi::PROPERTY_DESCRIPTION,
            value: value.as_ptr(),
        };
        // SAFETY: SetPluginProperty takes this struct; Orthanc copies the strings.
        unsafe {
            invoke(
                context,
                pointer,
                service::SET_PLUGIN_PROPERTY,
                (&raw const params).cast(),
            )
        }
    })
}

/// Registers the callback Orthanc calls on every change (new instance, stable study...).
pub fn register_on_change(callback: ffi::OnChangeCallback) -> Result<(), CallError> {
    with_context(|context, pointer| {
        let params = ffi::RegisterOnChange { callback };
        // SAFETY: RegisterOnChangeCallback takes this struct.
        unsafe {
            invoke(
                context,
                pointer,
                service::REGISTER_ON_CHANGE_CALLBACK,
                (&raw const params).cast(),
            )
        }
    })
}

/// Registers a REST route (a regular expression over the whole path). The callback may run
/// on several HTTP threads at once.
pub fn register_rest(path: &'static CStr, callback: ffi::RestCallback) -> Result<(), CallError> {
    with_context(|context, pointer| {
        let params = ffi::RegisterRest {
            path_regular_expression: path.as_ptr(),
            callback,
        };
        // SAFETY: RegisterRestCallbackNoLock takes this struct.
        unsafe {
            invoke(
                context,
                pointer,
                service::REGISTER_REST_CALLBACK_NO_LOCK,
                (&raw const params).cast(),
            )
        }
    })
}

/// Reads a memory buffer Orthanc filled, and frees it.
fn take_buffer(context: &OrthancPluginContext, buffer: &ffi::OrthancPluginMemoryBuffer) -> Vec<u8> {
    let bytes = if buffer.data.is_null() || buffer.size == 0 {
        Vec::new()
    } else {
        // SAFETY: Orthanc filled `size` bytes at `data`.
        unsafe { std::slice::from_raw_parts(buffer.data.cast::<u8>(), buffer.size as usize) }
            .to_vec()
    };
    free(context, buffer.data);
    bytes
}

fn c_uri(uri: &str) -> Result<CString, CallError> {
    CString::new(uri).map_err(|_| CallError::Invalid(format!("{uri:?}: NUL in a URI")))
}

/// GET on Orthanc's own REST API (no HTTP involved); the answer's body.
pub fn rest_get(uri: &str) -> Result<Vec<u8>, CallError> {
    let c_uri = c_uri(uri)?;
    with_context(|context, pointer| {
        let mut buffer = ffi::OrthancPluginMemoryBuffer {
            data: std::ptr::null_mut(),
            size: 0,
        };
        let params = ffi::RestApiGet {
            target: &mut buffer,
            uri: c_uri.as_ptr(),
        };
        // SAFETY: RestApiGet takes this struct and fills the buffer on success.
        unsafe {
            invoke(
                context,
                pointer,
                service::REST_API_GET,
                (&raw const params).cast(),
            )?
        };
        Ok(take_buffer(context, &buffer))
    })
}

/// POST on Orthanc's own REST API; the answer's body.
pub fn rest_post(uri: &str, body: &[u8]) -> Result<Vec<u8>, CallError> {
    let c_uri = c_uri(uri)?;
    let size = u32::try_from(body.len()).map_err(|_| {
        CallError::Invalid(format!(
            "POST {uri}: a body of {} bytes is too large",
            body.len()
        ))
    })?;
    with_context(|context, pointer| {
        let mut buffer = ffi::OrthancPluginMemoryBuffer {
            data: std::ptr::null_mut(),
            size: 0,
        };
        let params = ffi::RestApiPostPut {
            target: &mut buffer,
            uri: c_uri.as_ptr(),
            body: body.as_ptr().cast(),
            body_size: size,
        };
        // SAFETY: RestApiPost takes this struct and fills the buffer on success.
        unsafe {
            invoke(
                context,
                pointer,
                service::REST_API_POST,
                (&raw const params).cast(),
            )?
        };
        Ok(take_buffer(context, &buffer))
    })
}

/// DELETE on Orthanc's own REST API.
pub fn rest_delete(uri: &str) -> Result<(), CallError> {
    let c_uri = c_uri(uri)?;
    with_context(|context, pointer| {
        // SAFETY: RestApiDelete takes the NUL-terminated URI itself.
        unsafe {
            invoke(
                context,
                pointer,
                service::REST_API_DELETE,
                c_uri.as_ptr().cast(),
            )
        }
    })
}

/// The answer to one REST request, valid during its callback.
pub struct Output(*mut OrthancPluginRestOutput);

impl Output {
    /// Wraps the output Orthanc passed to a REST callback.
    pub fn new(output: *mut OrthancPluginRestOutput) -> Output {
        Output(output)
    }

    /// Answers 200 with `body`.
    pub fn answer(&self, body: &[u8], mime: &CStr) -> Result<(), CallError> {
        let size = u32::try_from(body.len())
            .map_err(|_| CallError::Invalid("an answer over 4 GiB".into()))?;
        with_context(|context, pointer| {
            let params = ffi::AnswerBuffer {
                output: self.0,
                answer: body.as_ptr().cast(),
                answer_size: size,
                mime_type: mime.as_ptr(),
            };
            // SAFETY: AnswerBuffer takes this struct; `self.0` is the callback's output.
            unsafe {
                invoke(
                    context,
                    pointer,
                    service::ANSWER_BUFFER,
                    (&raw const params).cast(),
                )
            }
        })
    }

    /// Answers an HTTP error status with a body.
    pub fn status(&self, status: u16, body: &str) -> Result<(), CallError> {
        let size = u32::try_from(body.len())
            .map_err(|_| CallError::Invalid("an answer over 4 GiB".into()))?;
        with_context(|context, pointer| {
            let params = ffi::SendHttpStatus {
                output: self.0,
                status,
                body: body.as_ptr().cast(),
                body_size: size,
            };
            // SAFETY: SendHttpStatus takes this struct; `self.0` is the callback's output.
            unsafe {
                invoke(
                    context,
                    pointer,
                    service::SEND_HTTP_STATUS,
                    (&raw const params).cast(),
                )
            }
        })
    }

    /// Answers 405, naming the allowed methods (e.g. "GET").
    pub fn method_not_allowed(&self, allowed: &CStr) -> Result<(), CallError> {
        with_context(|context, pointer| {
            let params = ffi::OutputPlusArgument {
                output: self.0,
                argument: allowed.as_ptr(),
            };
            // SAFETY: SendMethodNotAllowed takes this struct.
            unsafe {
                invoke(
                    context,
                    pointer,
                    service::SEND_METHOD_NOT_ALLOWED,
                    (&raw const params).cast(),
                )
            }
        })
    }
}
