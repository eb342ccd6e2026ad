//! Calling into the JVM: `crac-jcmd JDK.checkpoint` runs the same Java notifications as
//! `jdk.crac.Core.checkpointRestore()`. (Java calls us back over the control socket, not
//! through JNI natives, so no native method of ours is ever bound.)

use jni_sys::{
    jclass, jint, jmethodID, jobject, jsize, JNIEnv, JavaVM, JavaVMAttachArgs, JNI_OK,
    JNI_VERSION_1_8,
};
use std::ffi::{c_void, CStr};

const AGENT_LINK: &CStr = c"jdk/crac/impl/AgentLink";

type GetCreatedVms = unsafe extern "system" fn(*mut *mut JavaVM, jsize, *mut jsize) -> jint;

fn the_vm() -> Option<*mut JavaVM> {
    // SAFETY: dlsym with a NUL-terminated name; libjvm is loaded RTLD_GLOBAL by the launcher.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"JNI_GetCreatedJavaVMs".as_ptr()) };
    if sym.is_null() {
        return None;
    }
    // SAFETY: the symbol is JNI_GetCreatedJavaVMs with this signature.
    let get: GetCreatedVms = unsafe { std::mem::transmute::<*mut c_void, GetCreatedVms>(sym) };
    let mut vm: *mut JavaVM = std::ptr::null_mut();
    let mut count: jsize = 0;
    // SAFETY: room for one VM pointer, as we say.
    let rc = unsafe { get(&mut vm, 1, &mut count) };
    (rc == JNI_OK && count == 1 && !vm.is_null()).then_some(vm)
}

/// This thread, attached to the JVM as a daemon for as long as it is held.
struct Attached {
    vm: *mut JavaVM,
    env: *mut JNIEnv,
    detach: bool,
}

impl Attached {
    fn new(name: &CStr, detach: bool) -> Option<Attached> {
        let vm = the_vm()?;
        let mut env: *mut c_void = std::ptr::null_mut();
        let mut args = JavaVMAttachArgs {
            version: JNI_VERSION_1_8,
            name: name.as_ptr().cast_mut(),
            group: std::ptr::null_mut(),
        };
        // SAFETY: vm is a live JavaVM; the function table entry exists in every JDK >= 1.4.
        let rc = unsafe {
            ((**vm).v1_4.AttachCurrentThreadAsDaemon)(
                vm,
                &mut env,
                (&mut args as *mut JavaVMAttachArgs).cast(),
            )
        };
        (rc == JNI_OK && !env.is_null()).then_some(Attached {
            vm,
            env: env.cast(),
            detach,
        })
    }

    fn find_agent_link(&self) -> Option<jclass> {
        let env = self.env;
        // SAFETY: env is this thread's JNIEnv; the class name is NUL-terminated.
        unsafe {
            let cls = ((**env).v1_4.FindClass)(env, AGENT_LINK.as_ptr());
            if ((**env).v1_4.ExceptionCheck)(env) {
                ((**env).v1_4.ExceptionClear)(env);
                return None;
            }
            (!cls.is_null()).then_some(cls)
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if self.detach {
            // SAFETY: this thread attached itself in `new`.
            unsafe {
                ((**self.vm).v1_4.DetachCurrentThread)(self.vm);
            }
        }
    }
}

/// Whether the jdk.crac API is on this JVM's boot class path (the control thread stays
/// attached afterwards: it will ask again).
pub fn api_available() -> bool {
    let Some(attached) = Attached::new(c"crac-shim control", false) else {
        return false;
    };
    match attached.find_agent_link() {
        Some(cls) => {
            // SAFETY: deleting the local reference we were given.
            unsafe {
                ((**attached.env).v1_4.DeleteLocalRef)(attached.env, cls);
            }
            true
        }
        None => false,
    }
}

/// Runs `AgentLink.checkpointFromAgent()` on this thread: `Ok(None)` when the checkpoint
/// happened (we may be the restored JVM), `Ok(Some(text))` with the exception jcmd prints.
pub fn checkpoint_from_agent() -> Result<Option<String>, String> {
    let attached =
        Attached::new(c"crac-shim checkpoint", true).ok_or("cannot attach to the JVM")?;
    let cls = attached
        .find_agent_link()
        .ok_or("the jdk.crac API is not loaded")?;
    let env = attached.env;
    // SAFETY: env is this thread's JNIEnv; names and signature are NUL-terminated; the method
    // is static, takes no arguments and returns a String (or null).
    unsafe {
        let mid: jmethodID = ((**env).v1_4.GetStaticMethodID)(
            env,
            cls,
            c"checkpointFromAgent".as_ptr(),
            c"()Ljava/lang/String;".as_ptr(),
        );
        if mid.is_null() || ((**env).v1_4.ExceptionCheck)(env) {
            ((**env).v1_4.ExceptionClear)(env);
            return Err("the jdk.crac API lacks AgentLink.checkpointFromAgent".into());
        }
        let result: jobject =
            ((**env).v1_4.CallStaticObjectMethodA)(env, cls, mid, std::ptr::null());
        if ((**env).v1_4.ExceptionCheck)(env) {
            ((**env).v1_4.ExceptionDescribe)(env);
            ((**env).v1_4.ExceptionClear)(env);
            return Ok(Some(
                "java.lang.Error: the checkpoint notifications threw (see the JVM's stderr)".into(),
            ));
        }
        if result.is_null() {
            return Ok(None);
        }
        let chars = ((**env).v1_4.GetStringUTFChars)(env, result, std::ptr::null_mut());
        if chars.is_null() {
            return Ok(Some("java.lang.OutOfMemoryError".into()));
        }
        let text = CStr::from_ptr(chars).to_string_lossy().into_owned();
        ((**env).v1_4.ReleaseStringUTFChars)(env, result, chars);
        Ok(Some(text))
    }
}
