import java.lang.reflect.InvocationHandler;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;

/**
 * Test program that uses jdk.crac only by reflection, the way the org.crac facade (Spring
 * Boot, Quarkus, Micronaut) does: classes looked up by name, a Proxy implementing Resource.
 */
public class Facade {
    static Object keep;

    public static void main(String[] args) throws Throwable {
        String pkg = System.getProperty("org.crac.Core.Compat", "jdk.crac");
        ClassLoader loader = Facade.class.getClassLoader();
        Class<?> resource = Class.forName(pkg + ".Resource", false, loader);
        Class<?> context = Class.forName(pkg + ".Context", false, loader);
        Class<?> core = Class.forName(pkg + ".Core", false, loader);
        Class.forName(pkg + ".CheckpointException", false, loader);
        Class.forName(pkg + ".RestoreException", false, loader);
        Method getGlobalContext = core.getMethod("getGlobalContext");
        Method register = context.getMethod("register", resource);
        Method checkpointRestore = core.getMethod("checkpointRestore");
        InvocationHandler handler = (proxy, method, margs) -> {
            switch (method.getName()) {
                case "beforeCheckpoint":
                    System.out.println("facade before");
                    return null;
                case "afterRestore":
                    System.out.println("facade after");
                    return null;
                case "hashCode":
                    return System.identityHashCode(proxy);
                case "equals":
                    return proxy == margs[0];
                default:
                    return "FacadeResource";
            }
        };
        keep = Proxy.newProxyInstance(loader, new Class<?>[] {resource}, handler);
        register.invoke(getGlobalContext.invoke(null), keep);
        System.out.println("facade checkpointing");
        try {
            checkpointRestore.invoke(null);
            System.out.println("facade returned normally");
        } catch (java.lang.reflect.InvocationTargetException e) {
            System.out.println("facade exception " + e.getCause());
        }
        Thread.sleep(100_000);
    }
}
