package org.crac;

import java.lang.reflect.InvocationHandler;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.List;

/**
 * Stand-in for org.crac's Core (see Resource). As the real facade does: at class
 * initialisation it looks for an implementation by reflection (the package named by
 * -Dorg.crac.Core.Compat, then javax.crac, then jdk.crac), wraps each registered resource in
 * a java.lang.reflect.Proxy of that package's Resource, keeps the wrappers reachable, and
 * falls back to doing nothing when any reflective step fails.
 */
public class Core {
    /** Public for the management package, as the real facade's helper class is. */
    public static final Impl IMPL = Impl.find();
    private static final Context<Resource> GLOBAL = new Context<>() {
        @Override
        public void beforeCheckpoint(Context<? extends Resource> context) {
        }

        @Override
        public void afterRestore(Context<? extends Resource> context) {
        }

        @Override
        public void register(Resource resource) {
            if (IMPL != null) {
                IMPL.register(resource);
            }
        }
    };

    private Core() {
    }

    public static Context<Resource> getGlobalContext() {
        return GLOBAL;
    }

    /** Deprecated in org.crac 1.5 in favour of CRaCMXBean.checkpointRestore(). */
    @Deprecated
    public static void checkpointRestore() throws CheckpointException, RestoreException {
        if (IMPL == null) {
            throw new UnsupportedOperationException("no CRaC implementation found");
        }
        IMPL.invokeCheckpoint(IMPL.checkpointRestore, null);
    }

    /** The implementation found by reflection; public to the facade's management package. */
    public static final class Impl {
        final Class<?> resource;
        final Class<?> checkpointException;
        final Class<?> restoreException;
        final Method register;
        final Method checkpointRestore;
        final Object global;
        private final List<Object> keep = new ArrayList<>();

        private Impl(String pkg) throws ReflectiveOperationException {
            resource = Class.forName(pkg + ".Resource");
            Class<?> context = Class.forName(pkg + ".Context");
            Class<?> core = Class.forName(pkg + ".Core");
            checkpointException = Class.forName(pkg + ".CheckpointException");
            restoreException = Class.forName(pkg + ".RestoreException");
            checkpointRestore = core.getMethod("checkpointRestore");
            global = core.getMethod("getGlobalContext").invoke(null);
            register = context.getMethod("register", resource);
        }

        static Impl find() {
            List<String> candidates = new ArrayList<>();
            String compat = System.getProperty("org.crac.Core.Compat");
            if (compat != null) {
                candidates.add(compat);
            }
            candidates.add("javax.crac");
            candidates.add("jdk.crac");
            for (String pkg : candidates) {
                try {
                    return new Impl(pkg);
                } catch (ReflectiveOperationException | LinkageError | RuntimeException e) {
                    // next candidate
                }
            }
            return null;
        }

        synchronized void register(Resource r) {
            InvocationHandler h = (proxy, method, args) -> {
                switch (method.getName()) {
                    case "beforeCheckpoint":
                        r.beforeCheckpoint(null);
                        return null;
                    case "afterRestore":
                        r.afterRestore(null);
                        return null;
                    case "hashCode":
                        return System.identityHashCode(proxy);
                    case "equals":
                        return proxy == args[0];
                    default:
                        return "org.crac proxy of " + r;
                }
            };
            Object proxy = java.lang.reflect.Proxy.newProxyInstance(
                    Core.class.getClassLoader(), new Class<?>[] {resource}, h);
            keep.add(proxy);
            try {
                register.invoke(global, proxy);
            } catch (ReflectiveOperationException e) {
                throw new RuntimeException(e);
            }
        }

        /** Calls a checkpoint method and translates the implementation's exceptions. */
        public void invokeCheckpoint(Method m, Object target)
                throws CheckpointException, RestoreException {
            try {
                m.invoke(target);
            } catch (InvocationTargetException e) {
                Throwable cause = e.getCause();
                if (checkpointException.isInstance(cause)) {
                    CheckpointException ce = new CheckpointException();
                    for (Throwable t : cause.getSuppressed()) {
                        ce.addSuppressed(t);
                    }
                    throw ce;
                }
                if (restoreException.isInstance(cause)) {
                    RestoreException re = new RestoreException();
                    for (Throwable t : cause.getSuppressed()) {
                        re.addSuppressed(t);
                    }
                    throw re;
                }
                CheckpointException ce = new CheckpointException();
                ce.addSuppressed(cause);
                throw ce;
            } catch (IllegalAccessException e) {
                CheckpointException ce = new CheckpointException();
                ce.addSuppressed(e);
                throw ce;
            }
        }
    }
}
