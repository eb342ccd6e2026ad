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

/// This thread, attached to the JVM for as long as it is held: as a daemon, or not (then the
/// JVM does not end while it is attached).
struct Attached {
    vm: *mut JavaVM,
    env: *mut JNIEnv,
    detach: bool,
}

impl Attached {
    fn new(name: &CStr, detach: bool) -> Option<Attached> {
        Attached::attach(name, detach, true)
    }

    fn attach(name: &CStr, detach: bool, daemon: bool) -> Option<Attached> {
        let vm = the_vm()?;
        let mut env: *mut c_void = std::ptr::null_mut();
        // Already attached (the control thread holding the JVM across a dump, `Hold`): the
        // same environment, and the attachment stays the holder's to end.
        // SAFETY: vm is a live JavaVM; GetEnv writes one pointer.
        if unsafe { ((**vm).v1_4.GetEnv)(vm, &mut env, JNI_VERSION_1_8) } == JNI_OK
            && !env.is_null()
        {
            return Some(Attached {
                vm,
                env: env.cast(),
                detach: false,
            });
        }
        let mut args = JavaVMAttachArgs {
            version: JNI_VERSION_1_8,
            name: name.as_ptr().cast_mut(),
            group: std::ptr::null_mut(),
        };
        // SAFETY: vm is a live JavaVM; both function table entries exist in every JDK >= 1.4.
        let rc = unsafe {
            let attach = if daemon {
                (**vm).v1_4.AttachCurrentThreadAsDaemon
            } else {
                (**vm).v1_4.AttachCurrentThread
            };
            attach(vm, &mut env, (&mut args as *mut JavaVMAttachArgs).cast())
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

/// Whether the jdk.crac API is on this JVM's boot class path. The control thread detaches
/// again: a thread left attached while it waits in native code makes HotSpot's exit wait for
/// it (up to 300 ms, at every exit of a restored copy).
pub fn api_available() -> bool {
    let Some(attached) = Attached::new(c"crac-shim control", true) else {
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
    // Not a daemon: as in a CRaC JDK, the JVM lives until its checkpoint is done even if its
    // last other thread ends meanwhile (a restored JVM then exits once this one detaches).
    let attached =
        Attached::attach(c"crac-shim checkpoint", true, false).ok_or("cannot attach to the JVM")?;
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

/// What a restored JVM must not share with its siblings or keep from its past: the
/// environment (now the restoring process's) and the seeds of the JDK's default random
/// generators (every copy of one image would otherwise produce the same numbers).
/// Runs before the Java `afterRestore` notifications. Best effort: a field that a JDK version
/// lacks is skipped.
/// `-XX:±CRaCResetStartTime` as this restore asks (uptime.rs).
pub struct StartTime {
    pub reset: bool,
    /// The restore's start, ms since the epoch.
    pub restore_ms: i64,
    /// How long ago that was.
    pub took_ms: i64,
}

pub fn refresh_after_restore(env_vars: &[(String, String)], start_time: &StartTime) {
    if !env_vars.is_empty() {
        replace_native_environment(env_vars);
    }
    let Some(attached) = Attached::new(c"crac-shim control", true) else {
        return;
    };
    // Java's threads may be held still (`Hold`): a class one of them is loading would never
    // come, so only classes already loaded are looked at (one not loaded has nothing to reseed).
    let j = Jni {
        env: attached.env,
        loaded_only: true,
    };
    // SAFETY: env belongs to this attached thread; every reference made below is local and
    // freed with the frame.
    unsafe {
        if ((**j.env).v1_4.PushLocalFrame)(j.env, 256) != 0 {
            return;
        }
        if !env_vars.is_empty() {
            j.replace_java_environment(env_vars);
        }
        j.reseed_random_generators();
        j.reseed_secure_randoms();
        if start_time.restore_ms > 0 {
            crate::uptime::after_restore(
                j.env,
                start_time.reset,
                start_time.restore_ms,
                start_time.took_ms,
            );
        }
        ((**j.env).v1_4.PopLocalFrame)(j.env, std::ptr::null_mut());
    }
}

/// Java held across a dump, from just before the dump helper starts until the restored copy
/// is refreshed (or the JVM goes on): the monitors of the SecureRandom engines to reseed (and
/// of Math.random()'s generator) are taken, as a CRaC JDK's own engines lock themselves in
/// beforeCheckpoint, and then every other Java thread is suspended. So no thread of a copy
/// draws a random number its siblings draw too, nothing of the program runs (nor exits: a
/// JVM's exit would wait up to 300 ms for this thread) before the copy's environment and
/// seeds are its own, and the refresh never waits for a lock a suspended thread holds (it
/// owns the ones it needs, and loads no class).
pub struct Hold {
    // Let go in this order (see Drop): monitors, then threads, then the attachment.
    locked: Vec<jobject>,
    paused: Option<JavaPaused>,
    attached: Attached,
}

pub fn hold_java() -> Option<Hold> {
    let attached = Attached::new(c"crac-shim control", true)?;
    let env = attached.env;
    let j = Jni {
        env,
        loaded_only: true,
    };
    let mut monitors: Vec<jobject> = Vec::new();
    {
        let list = SECURE_RANDOMS.lock().unwrap_or_else(|p| p.into_inner());
        for weak in list.iter() {
            // SAFETY: env is this thread's; weak is a live weak global reference of ours; the
            // field id is looked up on the object's own class.
            unsafe {
                let engine = ((**env).v1_4.NewLocalRef)(env, *weak as jobject);
                if engine.is_null() {
                    continue;
                }
                // DRBG delegates to its mechanism, which synchronizes on itself.
                let class = ((**env).v1_4.GetObjectClass)(env, engine);
                let field = ((**env).v1_4.GetFieldID)(
                    env,
                    class,
                    c"impl".as_ptr(),
                    c"Lsun/security/provider/AbstractDrbg;".as_ptr(),
                );
                let inner = if j.ok() && !field.is_null() {
                    ((**env).v1_4.GetObjectField)(env, engine, field)
                } else {
                    std::ptr::null_mut()
                };
                monitors.push(if inner.is_null() { engine } else { inner });
                ((**env).v1_4.DeleteLocalRef)(env, class);
            }
        }
    }
    if let Some(holder) = j.class(c"java/lang/Math$RandomNumberGeneratorHolder") {
        if let Some(rng) = j.static_object(holder, c"randomNumberGenerator", c"Ljava/util/Random;")
        {
            monitors.push(rng);
        }
    }
    let mut locked = Vec::new();
    for m in monitors {
        // SAFETY: env is this thread's; m is a live local reference; a monitor entered here is
        // exited by this same thread in Drop (global reference kept until then).
        unsafe {
            if ((**env).v1_4.MonitorEnter)(env, m) == JNI_OK {
                locked.push(((**env).v1_4.NewGlobalRef)(env, m));
            }
            ((**env).v1_4.DeleteLocalRef)(env, m);
        }
    }
    let paused = pause_java();
    Some(Hold {
        locked,
        paused,
        attached,
    })
}

impl Hold {
    /// Whether Java's threads are suspended (a debugger may refuse it).
    pub fn paused(&self) -> bool {
        self.paused.is_some()
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let env = self.attached.env;
        for m in self.locked.drain(..) {
            // SAFETY: entered by this thread in hold_java; the global reference is ours.
            unsafe {
                ((**env).v1_4.MonitorExit)(env, m);
                ((**env).v1_4.DeleteGlobalRef)(env, m);
            }
        }
        drop(self.paused.take());
    }
}

/// The JVM held still in place for `-XX:CRaCEngine=pauseengine`: every Java thread but this
/// one is suspended (JVMTI) until this is dropped. The JVM's own threads (GC, compilers) have
/// nothing to do meanwhile.
pub struct JavaPaused {
    // Dropped in this order: the environment goes while the thread is still attached.
    jvmti: crate::jvmti::Jvmti,
    attached: Attached,
    threads: Vec<jobject>,
}

/// None when the JVM would not grant a suspension (a debugger holds can_suspend, say): the
/// program then runs on during the pause, and the pause says so.
pub fn pause_java() -> Option<JavaPaused> {
    let attached = Attached::new(c"crac-shim pause", true)?;
    let jvmti = crate::jvmti::Jvmti::new(attached.vm, crate::jvmti::CAN_SUSPEND)?;
    let threads = jvmti.suspend_others(attached.env);
    Some(JavaPaused {
        jvmti,
        attached,
        threads,
    })
}

impl Drop for JavaPaused {
    fn drop(&mut self) {
        self.jvmti
            .resume(self.attached.env, std::mem::take(&mut self.threads));
    }
}

/// The JDK's own SecureRandom engines whose state a restored copy must not share with its
/// siblings: SHA1PRNG (also inside NativePRNG, which mixes its output with one, and the
/// seeder every self-seeding SHA1PRNG draws from) and DRBG (whatever its mechanism).
/// NativePRNG itself reads /dev/urandom at every call and needs nothing more.
const SEEDED_ENGINES: [&CStr; 2] = [
    c"Lsun/security/provider/SecureRandom;",
    c"Lsun/security/provider/DRBG;",
];

/// Weak references to the engines alive at the last checkpoint (as addresses: the list
/// outlives any one JNI frame). Found before the dump, so that the restore, whose time
/// must not grow with the heap, only visits them.
static SECURE_RANDOMS: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

/// Walks the heap for the SecureRandom engines to reseed after a restore. Runs before each
/// dump; an engine made later seeds itself after the restore from the (reseeded) seeder.
pub fn remember_secure_randoms() {
    let Some(attached) = Attached::new(c"crac-shim control", true) else {
        return;
    };
    let Some(jvmti) = crate::jvmti::Jvmti::new(attached.vm, crate::jvmti::CAN_TAG_OBJECTS) else {
        return;
    };
    let env = attached.env;
    let mut list = SECURE_RANDOMS.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: env belongs to this attached thread; every local reference made here is
    // deleted, and weak global references are deleted before they are dropped from the list.
    unsafe {
        for old in list.drain(..) {
            ((**env).v1_4.DeleteWeakGlobalRef)(env, old as jobject);
        }
        for engine in jvmti.instances_of(env, &SEEDED_ENGINES) {
            let weak = ((**env).v1_4.NewWeakGlobalRef)(env, engine);
            if !weak.is_null() {
                list.push(weak as usize);
            }
            ((**env).v1_4.DeleteLocalRef)(env, engine);
        }
    }
}

fn replace_native_environment(vars: &[(String, String)]) {
    // SAFETY: clearenv/setenv are not thread-safe against concurrent getenv; the JVM's threads
    // do not read the environment after start-up (Java caches it), and this runs once per
    // restore, before the program is told it was restored.
    unsafe {
        libc::clearenv();
        for (k, v) in vars {
            if let (Ok(k), Ok(v)) = (
                std::ffi::CString::new(k.as_str()),
                std::ffi::CString::new(v.as_str()),
            ) {
                libc::setenv(k.as_ptr(), v.as_ptr(), 1);
            }
        }
    }
    scrub_original_environment(vars);
}

/// `/proc/PID/environ` shows the environment the process was started with, from its own
/// memory: in a restored copy, the checkpointed JVM's, secrets included. Once clearenv has
/// let go of those strings, every one the restoring environment does not have as it is is
/// overwritten with zeros, so the copy shows (and holds) only what it was given.
fn scrub_original_environment(keep: &[(String, String)]) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name (which may hold spaces): env_start and env_end are the
    // 50th and 51st fields of the line, the 48th and 49th after ") ".
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (Some(Ok(start)), Some(Ok(end))) = (
        fields.get(47).map(|f| f.parse::<usize>()),
        fields.get(48).map(|f| f.parse::<usize>()),
    ) else {
        return;
    };
    if start == 0 || end <= start {
        return;
    }
    // SAFETY: the kernel reports [start, end) as this process's initial environment strings,
    // in the writable stack mapping of the main thread; after clearenv nothing in libc points
    // into it, and no other code of the JVM keeps pointers to environment strings past start-up.
    let region = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
    let mut at = 0;
    while at < region.len() {
        let len = region[at..]
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(region.len() - at);
        let entry = &region[at..at + len];
        let kept = std::str::from_utf8(entry)
            .ok()
            .and_then(|e| e.split_once('='))
            .is_some_and(|(k, v)| keep.iter().any(|(kk, kv)| kk == k && kv == v));
        if !kept {
            region[at..at + len].fill(0);
        }
        at += len + 1;
    }
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: bytes is writable for its length.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != 8 {
        // SAFETY: clock_gettime writes into a local, zero-initialized timespec.
        let ts = unsafe {
            let mut ts = std::mem::zeroed::<libc::timespec>();
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
            ts
        };
        return (ts.tv_nsec as u64) ^ ((ts.tv_sec as u64) << 32) ^ u64::from(std::process::id());
    }
    u64::from_ne_bytes(bytes)
}

/// `RuntimeImpl` reads the start time once, when `ManagementFactory.getRuntimeMXBean()` first
/// makes it: if it exists, its copy is set (uptime.rs). The class is looked up without being
/// loaded. Runs inside refresh_after_restore's local frame.
pub fn set_cached_start_time(env: *mut JNIEnv, start: jni_sys::jlong) {
    let Some(find_loaded) = find_loaded_class() else {
        return;
    };
    let j = Jni {
        env,
        loaded_only: true,
    };
    // SAFETY: env is this thread's; ids belong to the classes they are used with; references
    // are local to the caller's frame.
    unsafe {
        let name =
            ((**env).v1_4.NewStringUTF)(env, c"sun.management.ManagementFactoryHelper".as_ptr());
        if !j.ok() || name.is_null() {
            return;
        }
        let helper = find_loaded(env, std::ptr::null_mut(), name);
        if !j.ok() || helper.is_null() {
            return;
        }
        let Some(runtime) =
            j.static_object(helper, c"runtimeMBean", c"Lsun/management/RuntimeImpl;")
        else {
            return;
        };
        let class = ((**env).v1_4.GetObjectClass)(env, runtime);
        let cached =
            ((**env).v1_4.GetFieldID)(env, class, c"vmStartupTime".as_ptr(), c"J".as_ptr());
        if j.ok() && !cached.is_null() {
            ((**env).v1_4.SetLongField)(env, runtime, cached, start);
        }
    }
}

/// Thin helpers over one JNIEnv; each returns None (with the exception cleared) on failure.
struct Jni {
    env: *mut JNIEnv,
    /// Look classes up only among those loaded (JVM_FindLoadedClass), never load one.
    loaded_only: bool,
}

/// `JVM_FindLoadedClass` of HotSpot, for a binary name (`java.lang.Thread`).
type FindLoaded = unsafe extern "C" fn(*mut JNIEnv, jobject, jobject) -> jobject;

fn find_loaded_class() -> Option<FindLoaded> {
    static FOUND: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: dlsym with a NUL-terminated name.
    let sym = *FOUND.get_or_init(|| unsafe {
        libc::dlsym(libc::RTLD_DEFAULT, c"JVM_FindLoadedClass".as_ptr()) as usize
    });
    // SAFETY: JVM_FindLoadedClass(env, loader, name) in every HotSpot since JDK 1.2.
    (sym != 0).then(|| unsafe { std::mem::transmute::<usize, FindLoaded>(sym) })
}

impl Jni {
    fn ok(&self) -> bool {
        // SAFETY: env is valid for this thread.
        unsafe {
            if ((**self.env).v1_4.ExceptionCheck)(self.env) {
                ((**self.env).v1_4.ExceptionClear)(self.env);
                return false;
            }
        }
        true
    }

    fn class(&self, name: &CStr) -> Option<jclass> {
        if self.loaded_only {
            let find = find_loaded_class()?;
            let dotted = std::ffi::CString::new(
                name.to_bytes()
                    .iter()
                    .map(|&b| if b == b'/' { b'.' } else { b })
                    .collect::<Vec<u8>>(),
            )
            .ok()?;
            // SAFETY: env is valid; the name is a NUL-terminated binary class name; the
            // boot loader (null) then the system loader are asked.
            unsafe {
                let jname = ((**self.env).v1_4.NewStringUTF)(self.env, dotted.as_ptr());
                if !self.ok() || jname.is_null() {
                    return None;
                }
                let c = find(self.env, std::ptr::null_mut(), jname);
                ((**self.env).v1_4.DeleteLocalRef)(self.env, jname);
                return (self.ok() && !c.is_null()).then_some(c);
            }
        }
        // SAFETY: env is valid; name is NUL-terminated.
        let c = unsafe { ((**self.env).v1_4.FindClass)(self.env, name.as_ptr()) };
        (self.ok() && !c.is_null()).then_some(c)
    }

    fn static_object(&self, cls: jclass, name: &CStr, sig: &CStr) -> Option<jobject> {
        // SAFETY: env is valid; names are NUL-terminated; the field id matches the class.
        unsafe {
            let f =
                ((**self.env).v1_4.GetStaticFieldID)(self.env, cls, name.as_ptr(), sig.as_ptr());
            if !self.ok() || f.is_null() {
                return None;
            }
            let o = ((**self.env).v1_4.GetStaticObjectField)(self.env, cls, f);
            (self.ok() && !o.is_null()).then_some(o)
        }
    }

    fn method(&self, cls: jclass, name: &CStr, sig: &CStr, is_static: bool) -> Option<jmethodID> {
        // SAFETY: env is valid; names are NUL-terminated.
        let m = unsafe {
            if is_static {
                ((**self.env).v1_4.GetStaticMethodID)(self.env, cls, name.as_ptr(), sig.as_ptr())
            } else {
                ((**self.env).v1_4.GetMethodID)(self.env, cls, name.as_ptr(), sig.as_ptr())
            }
        };
        (self.ok() && !m.is_null()).then_some(m)
    }

    /// `holder.field.set(random)` for an AtomicLong static field.
    fn reseed_atomic_long(&self, holder: &CStr, field: &CStr) {
        let Some(cls) = self.class(holder) else {
            return;
        };
        let Some(atomic) =
            self.static_object(cls, field, c"Ljava/util/concurrent/atomic/AtomicLong;")
        else {
            return;
        };
        let Some(al) = self.class(c"java/util/concurrent/atomic/AtomicLong") else {
            return;
        };
        let Some(set) = self.method(al, c"set", c"(J)V", false) else {
            return;
        };
        let arg = [jni_sys::jvalue {
            j: random_u64() as i64,
        }];
        // SAFETY: calling AtomicLong.set(long) on an AtomicLong.
        unsafe { ((**self.env).v1_4.CallVoidMethodA)(self.env, atomic, set, arg.as_ptr()) };
        self.ok();
    }

    fn reseed_random_generators(&self) {
        self.reseed_atomic_long(c"java/util/concurrent/ThreadLocalRandom", c"seeder");
        self.reseed_atomic_long(c"java/util/SplittableRandom", c"defaultGen");
        self.reseed_atomic_long(c"java/util/Random", c"seedUniquifier");
        // Math.random()'s shared generator.
        if let Some(holder) = self.class(c"java/lang/Math$RandomNumberGeneratorHolder") {
            if let (Some(rng), Some(random)) = (
                self.static_object(holder, c"randomNumberGenerator", c"Ljava/util/Random;"),
                self.class(c"java/util/Random"),
            ) {
                if let Some(set_seed) = self.method(random, c"setSeed", c"(J)V", false) {
                    let arg = [jni_sys::jvalue {
                        j: random_u64() as i64,
                    }];
                    // SAFETY: Random.setSeed(long) on a Random.
                    unsafe {
                        ((**self.env).v1_4.CallVoidMethodA)(self.env, rng, set_seed, arg.as_ptr())
                    };
                    self.ok();
                }
            }
        }
        self.reseed_thread_local_random();
    }

    /// `engineSetSeed(fresh bytes)` on every engine found before the dump: SHA1PRNG and DRBG
    /// both mix what they are given into their state (DRBG as a reseed), so no copy keeps
    /// the sequence of the image. Unlike a CRaC JDK, which records who seeded an engine, a
    /// SHA1PRNG the program seeded itself is reseeded too: a stock JDK keeps no such record.
    fn reseed_secure_randoms(&self) {
        let list = SECURE_RANDOMS.lock().unwrap_or_else(|p| p.into_inner());
        for weak in list.iter() {
            // SAFETY: env is valid; weak is a live weak global reference of ours; the method
            // id is looked up on the object's own class; the array has the length given.
            unsafe {
                let e = self.env;
                let engine = ((**e).v1_4.NewLocalRef)(e, *weak as jobject);
                if engine.is_null() {
                    continue;
                }
                let class = ((**e).v1_4.GetObjectClass)(e, engine);
                if let Some(set_seed) = self.method(class, c"engineSetSeed", c"([B)V", false) {
                    let mut fresh = [0u8; 32];
                    for chunk in fresh.chunks_mut(8) {
                        chunk.copy_from_slice(&random_u64().to_ne_bytes());
                    }
                    let seed = ((**e).v1_4.NewByteArray)(e, fresh.len() as jsize);
                    if !seed.is_null() {
                        ((**e).v1_4.SetByteArrayRegion)(
                            e,
                            seed,
                            0,
                            fresh.len() as jsize,
                            fresh.as_ptr().cast(),
                        );
                        ((**e).v1_4.CallVoidMethodA)(
                            e,
                            engine,
                            set_seed,
                            [jni_sys::jvalue { l: seed }].as_ptr(),
                        );
                        self.ok();
                        ((**e).v1_4.DeleteLocalRef)(e, seed);
                    }
                }
                self.ok();
                ((**e).v1_4.DeleteLocalRef)(e, class);
                ((**e).v1_4.DeleteLocalRef)(e, engine);
            }
        }
    }

    /// Each thread that already used ThreadLocalRandom carries its own seed.
    fn reseed_thread_local_random(&self) {
        let Some(thread) = self.class(c"java/lang/Thread") else {
            return;
        };
        let Some(get_threads) = self.method(thread, c"getThreads", c"()[Ljava/lang/Thread;", true)
        else {
            return;
        };
        // SAFETY: env is valid; field and method ids belong to java.lang.Thread; array
        // elements are Threads.
        unsafe {
            let seed = ((**self.env).v1_4.GetFieldID)(
                self.env,
                thread,
                c"threadLocalRandomSeed".as_ptr(),
                c"J".as_ptr(),
            );
            if !self.ok() || seed.is_null() {
                return;
            }
            let probe = ((**self.env).v1_4.GetFieldID)(
                self.env,
                thread,
                c"threadLocalRandomProbe".as_ptr(),
                c"I".as_ptr(),
            );
            if !self.ok() || probe.is_null() {
                return;
            }
            let threads = ((**self.env).v1_4.CallStaticObjectMethodA)(
                self.env,
                thread,
                get_threads,
                std::ptr::null(),
            );
            if !self.ok() || threads.is_null() {
                return;
            }
            let n = ((**self.env).v1_4.GetArrayLength)(self.env, threads);
            for i in 0..n {
                let t = ((**self.env).v1_4.GetObjectArrayElement)(self.env, threads, i);
                if t.is_null() || !self.ok() {
                    continue;
                }
                if ((**self.env).v1_4.GetIntField)(self.env, t, probe) != 0 {
                    ((**self.env).v1_4.SetLongField)(self.env, t, seed, random_u64() as i64);
                }
                ((**self.env).v1_4.DeleteLocalRef)(self.env, t);
            }
        }
    }

    /// Makes `System.getenv()` (and ProcessBuilder) see `vars`: the JDK keeps the environment
    /// in ProcessEnvironment.theEnvironment, read once from the process at first use.
    fn replace_java_environment(&self, vars: &[(String, String)]) {
        let Some(pe) = self.class(c"java/lang/ProcessEnvironment") else {
            return;
        };
        let Some(map) = self.static_object(pe, c"theEnvironment", c"Ljava/util/HashMap;") else {
            return;
        };
        let (Some(hash_map), Some(variable), Some(value)) = (
            self.class(c"java/util/HashMap"),
            self.class(c"java/lang/ProcessEnvironment$Variable"),
            self.class(c"java/lang/ProcessEnvironment$Value"),
        ) else {
            return;
        };
        let (Some(clear), Some(put), Some(var_of), Some(val_of)) = (
            self.method(hash_map, c"clear", c"()V", false),
            self.method(
                hash_map,
                c"put",
                c"(Ljava/lang/Object;Ljava/lang/Object;)Ljava/lang/Object;",
                false,
            ),
            self.method(
                variable,
                c"valueOf",
                c"([B)Ljava/lang/ProcessEnvironment$Variable;",
                true,
            ),
            self.method(
                value,
                c"valueOf",
                c"([B)Ljava/lang/ProcessEnvironment$Value;",
                true,
            ),
        ) else {
            return;
        };
        // SAFETY: env is valid; every id belongs to the class it is used with; byte arrays are
        // created with the exact length copied into them.
        unsafe {
            let e = self.env;
            ((**e).v1_4.CallVoidMethodA)(e, map, clear, std::ptr::null());
            if !self.ok() {
                return;
            }
            let bytes = |s: &str| {
                let a = ((**e).v1_4.NewByteArray)(e, s.len() as jsize);
                if !a.is_null() {
                    ((**e).v1_4.SetByteArrayRegion)(e, a, 0, s.len() as jsize, s.as_ptr().cast());
                }
                a
            };
            for (k, v) in vars {
                let (kb, vb) = (bytes(k), bytes(v));
                if kb.is_null() || vb.is_null() {
                    self.ok();
                    continue;
                }
                let kv = ((**e).v1_4.CallStaticObjectMethodA)(
                    e,
                    variable,
                    var_of,
                    [jni_sys::jvalue { l: kb }].as_ptr(),
                );
                let vv = ((**e).v1_4.CallStaticObjectMethodA)(
                    e,
                    value,
                    val_of,
                    [jni_sys::jvalue { l: vb }].as_ptr(),
                );
                if self.ok() && !kv.is_null() && !vv.is_null() {
                    let old = ((**e).v1_4.CallObjectMethodA)(
                        e,
                        map,
                        put,
                        [jni_sys::jvalue { l: kv }, jni_sys::jvalue { l: vv }].as_ptr(),
                    );
                    self.ok();
                    if !old.is_null() {
                        ((**e).v1_4.DeleteLocalRef)(e, old);
                    }
                }
                for r in [kb, vb, kv, vv] {
                    if !r.is_null() {
                        ((**e).v1_4.DeleteLocalRef)(e, r);
                    }
                }
            }
        }
    }
}
