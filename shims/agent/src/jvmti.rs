//! The few JVMTI functions the agent uses, from an environment made in the live phase and
//! disposed of after one use. A heap walk needs only `can_tag_objects`, which HotSpot grants
//! at any time (it is one of its "always" capabilities), so no `-agentpath` is needed.
//!
//! jni-sys has no JVMTI tables: each function is taken from `jvmtiInterface_1` by the number
//! the JVMTI specification gives it (the table's slot is that number minus one; the numbers
//! have not changed since JVMTI 1.0).

use jni_sys::{jclass, jint, jlong, jobject, JNIEnv, JavaVM, JNI_OK};
use std::ffi::{c_char, c_uchar, c_void, CStr};

const JVMTI_VERSION_1_2: jint = 0x3001_0200;
/// Reports only objects whose class carries a tag.
const HEAP_FILTER_CLASS_UNTAGGED: jint = 0x20;
const CLASS_TAG: jlong = 2;
const INSTANCE_TAG: jlong = 1;

/// Capability bits (`jvmtiCapabilities` is 128 bits of bit fields, in this order).
pub const CAN_TAG_OBJECTS: u32 = 1 << 0;
pub const CAN_SUSPEND: u32 = 1 << 20;

const GET_ALL_THREADS: usize = 4;
const GET_CURRENT_THREAD: usize = 18;
const SUSPEND_THREAD_LIST: usize = 92;
const RESUME_THREAD_LIST: usize = 93;
const DEALLOCATE: usize = 47;
const GET_CLASS_SIGNATURE: usize = 48;
const GET_LOADED_CLASSES: usize = 78;
const SET_TAG: usize = 107;
const GET_OBJECTS_WITH_TAGS: usize = 114;
const ITERATE_THROUGH_HEAP: usize = 116;
const DISPOSE_ENVIRONMENT: usize = 127;
const ADD_CAPABILITIES: usize = 142;

type Env = *mut *const *const c_void;

type HeapIterationCallback =
    unsafe extern "system" fn(jlong, jlong, *mut jlong, jint, *mut c_void) -> jint;

/// `jvmtiHeapCallbacks`: the iteration callback, then 14 others this walk leaves unset.
#[repr(C)]
struct HeapCallbacks {
    heap_iteration: Option<HeapIterationCallback>,
    others: [*const c_void; 14],
}

unsafe extern "system" fn tag_instance(
    _class_tag: jlong,
    _size: jlong,
    tag: *mut jlong,
    _length: jint,
    _user_data: *mut c_void,
) -> jint {
    // SAFETY: JVMTI hands a valid pointer to the object's tag for the callback's duration.
    unsafe { *tag = INSTANCE_TAG };
    0
}

pub struct Jvmti {
    env: Env,
}

impl Jvmti {
    /// A fresh environment with the capabilities asked for (`CAN_*`), or None when this JVM
    /// offers no JVMTI or will not grant them (can_suspend goes to one environment only).
    pub fn new(vm: *mut JavaVM, capabilities: u32) -> Option<Jvmti> {
        let mut env: *mut c_void = std::ptr::null_mut();
        // SAFETY: vm is a live JavaVM; GetEnv writes one pointer.
        let rc = unsafe { ((**vm).v1_4.GetEnv)(vm, &mut env, JVMTI_VERSION_1_2) };
        if rc != JNI_OK || env.is_null() {
            return None;
        }
        let jvmti = Jvmti { env: env.cast() };
        let caps: [u32; 4] = [capabilities, 0, 0, 0];
        type AddCaps = unsafe extern "system" fn(Env, *const u32) -> jint;
        // SAFETY: slot 142 is AddCapabilities; caps has the struct's size and layout.
        let rc = unsafe { jvmti.function::<AddCaps>(ADD_CAPABILITIES)(jvmti.env, caps.as_ptr()) };
        (rc == 0).then_some(jvmti)
    }

    /// The function in the given slot, typed by the caller.
    ///
    /// # Safety
    /// `F` must be the function pointer type the JVMTI specification gives that number.
    unsafe fn function<F: Copy>(&self, number: usize) -> F {
        // SAFETY: env points to the JVM's function table, which has every numbered slot;
        // the caller names the type of the one read.
        unsafe { std::mem::transmute_copy::<*const c_void, F>(&*(*self.env).add(number - 1)) }
    }

    fn deallocate(&self, memory: *mut c_void) {
        type Deallocate = unsafe extern "system" fn(Env, *mut c_uchar) -> jint;
        if !memory.is_null() {
            // SAFETY: memory was allocated by this environment for us.
            unsafe { self.function::<Deallocate>(DEALLOCATE)(self.env, memory.cast()) };
        }
    }

    /// Suspends every Java thread but the calling one (attached); returns global references
    /// to the threads suspended, for `resume`.
    pub fn suspend_others(&self, jni: *mut JNIEnv) -> Vec<jobject> {
        type GetAll = unsafe extern "system" fn(Env, *mut jint, *mut *mut jobject) -> jint;
        type GetCurrent = unsafe extern "system" fn(Env, *mut jobject) -> jint;
        type SuspendList = unsafe extern "system" fn(Env, jint, *const jobject, *mut jint) -> jint;
        let mut suspended = Vec::new();
        // SAFETY: functions called through their own slots; the thread array is read within
        // its count and given back; local references are deleted, global ones returned.
        unsafe {
            let mut me: jobject = std::ptr::null_mut();
            if self.function::<GetCurrent>(GET_CURRENT_THREAD)(self.env, &mut me) != 0 {
                return suspended;
            }
            let mut count: jint = 0;
            let mut threads: *mut jobject = std::ptr::null_mut();
            if self.function::<GetAll>(GET_ALL_THREADS)(self.env, &mut count, &mut threads) != 0 {
                ((**jni).v1_4.DeleteLocalRef)(jni, me);
                return suspended;
            }
            for i in 0..count.max(0) as usize {
                let t = *threads.add(i);
                if !((**jni).v1_4.IsSameObject)(jni, t, me) {
                    let global = ((**jni).v1_4.NewGlobalRef)(jni, t);
                    if !global.is_null() {
                        suspended.push(global);
                    }
                }
                ((**jni).v1_4.DeleteLocalRef)(jni, t);
            }
            self.deallocate(threads.cast());
            ((**jni).v1_4.DeleteLocalRef)(jni, me);
            let mut results = vec![0 as jint; suspended.len()];
            self.function::<SuspendList>(SUSPEND_THREAD_LIST)(
                self.env,
                suspended.len() as jint,
                suspended.as_ptr(),
                results.as_mut_ptr(),
            );
        }
        suspended
    }

    /// Resumes the threads `suspend_others` suspended and lets go of their references.
    pub fn resume(&self, jni: *mut JNIEnv, threads: Vec<jobject>) {
        type ResumeList = unsafe extern "system" fn(Env, jint, *const jobject, *mut jint) -> jint;
        let mut results = vec![0 as jint; threads.len()];
        // SAFETY: the slot's own type; the references are global ones of ours.
        unsafe {
            self.function::<ResumeList>(RESUME_THREAD_LIST)(
                self.env,
                threads.len() as jint,
                threads.as_ptr(),
                results.as_mut_ptr(),
            );
            for t in threads {
                ((**jni).v1_4.DeleteGlobalRef)(jni, t);
            }
        }
    }

    /// Local references (in `jni`'s frame) to every live object whose class has one of the
    /// signatures (exact classes, as `Lpkg/Name;`). Classes not loaded are not loaded: they
    /// have no instances. The walk runs at a safepoint; its cost grows with the heap.
    pub fn instances_of(&self, jni: *mut JNIEnv, signatures: &[&CStr]) -> Vec<jobject> {
        type GetLoaded = unsafe extern "system" fn(Env, *mut jint, *mut *mut jclass) -> jint;
        type GetSignature =
            unsafe extern "system" fn(Env, jclass, *mut *mut c_char, *mut *mut c_char) -> jint;
        type SetTag = unsafe extern "system" fn(Env, jobject, jlong) -> jint;
        type Iterate = unsafe extern "system" fn(
            Env,
            jint,
            jclass,
            *const HeapCallbacks,
            *const c_void,
        ) -> jint;
        type WithTags = unsafe extern "system" fn(
            Env,
            jint,
            *const jlong,
            *mut jint,
            *mut *mut jobject,
            *mut *mut jlong,
        ) -> jint;

        let mut found = Vec::new();
        // SAFETY: every function is called through the slot its type names; arrays and strings
        // the JVM allocates are read within their reported lengths and given back; every class
        // reference is deleted once looked at.
        unsafe {
            let mut count: jint = 0;
            let mut classes: *mut jclass = std::ptr::null_mut();
            if self.function::<GetLoaded>(GET_LOADED_CLASSES)(self.env, &mut count, &mut classes)
                != 0
            {
                return found;
            }
            let mut tagged = 0;
            for i in 0..count.max(0) as usize {
                let class = *classes.add(i);
                let mut sig: *mut c_char = std::ptr::null_mut();
                if self.function::<GetSignature>(GET_CLASS_SIGNATURE)(
                    self.env,
                    class,
                    &mut sig,
                    std::ptr::null_mut(),
                ) == 0
                    && !sig.is_null()
                {
                    let name = CStr::from_ptr(sig);
                    if signatures.contains(&name)
                        && self.function::<SetTag>(SET_TAG)(self.env, class, CLASS_TAG) == 0
                    {
                        tagged += 1;
                    }
                    self.deallocate(sig.cast());
                }
                ((**jni).v1_4.DeleteLocalRef)(jni, class);
            }
            self.deallocate(classes.cast());
            if tagged == 0 {
                return found;
            }
            let callbacks = HeapCallbacks {
                heap_iteration: Some(tag_instance),
                others: [std::ptr::null(); 14],
            };
            if self.function::<Iterate>(ITERATE_THROUGH_HEAP)(
                self.env,
                HEAP_FILTER_CLASS_UNTAGGED,
                std::ptr::null_mut(),
                &callbacks,
                std::ptr::null(),
            ) != 0
            {
                return found;
            }
            let mut objects: *mut jobject = std::ptr::null_mut();
            let mut n: jint = 0;
            if self.function::<WithTags>(GET_OBJECTS_WITH_TAGS)(
                self.env,
                1,
                &INSTANCE_TAG,
                &mut n,
                &mut objects,
                std::ptr::null_mut(),
            ) == 0
            {
                for i in 0..n.max(0) as usize {
                    found.push(*objects.add(i));
                }
                self.deallocate(objects.cast());
            }
        }
        found
    }
}

impl Drop for Jvmti {
    fn drop(&mut self) {
        type Dispose = unsafe extern "system" fn(Env) -> jint;
        // SAFETY: the environment is ours; its tags go with it.
        unsafe { self.function::<Dispose>(DISPOSE_ENVIRONMENT)(self.env) };
    }
}
