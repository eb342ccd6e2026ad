import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import jdk.crac.CheckpointException;
import jdk.crac.Context;
import jdk.crac.Core;
import jdk.crac.Resource;
import jdk.crac.RestoreException;
import jdk.crac.impl.OrderedContext;
import jdk.crac.management.CRaCMXBean;

/**
 * Test program for the jdk.crac API. The first argument picks a scenario; every notification
 * prints a line, so the tests can check order and outcomes.
 */
public class Api {
    static final List<Object> KEEP = new ArrayList<>();

    static class Named implements Resource {
        final String name;
        final boolean failBefore, failAfter;

        Named(String name, boolean failBefore, boolean failAfter) {
            this.name = name;
            this.failBefore = failBefore;
            this.failAfter = failAfter;
        }

        @Override
        public void beforeCheckpoint(Context<? extends Resource> c) throws Exception {
            System.out.println("before " + name);
            if (failBefore) {
                throw new IllegalStateException("before failed in " + name);
            }
        }

        @Override
        public void afterRestore(Context<? extends Resource> c) throws Exception {
            System.out.println("after " + name + " prop=" + System.getProperty("restore.prop"));
            if (failAfter) {
                throw new IllegalStateException("after failed in " + name);
            }
        }
    }

    static void register(Resource r) {
        KEEP.add(r);
        Core.getGlobalContext().register(r);
    }

    public static void main(String[] args) throws Exception {
        String scenario = args.length > 0 ? args[0] : "order";
        System.out.println("restore time before: " + CRaCMXBean.getCRaCMXBean().getRestoreTime());
        switch (scenario) {
            case "order": {
                register(new Named("a", false, false));
                OrderedContext<Resource> nested = new OrderedContext<>("nested", false);
                nested.register(new Named("n1", false, false));
                nested.register(new Named("n2", false, false));
                register(nested);
                register(new Named("b", false, false));
                break;
            }
            case "fail-before":
                register(new Named("a", false, false));
                register(new Named("bad", true, false));
                register(new Named("c", false, false));
                break;
            case "fail-after":
                register(new Named("a", false, true));
                register(new Named("b", false, false));
                break;
            case "recursive":
                register(new Resource() {
                    @Override
                    public void beforeCheckpoint(Context<? extends Resource> c) throws Exception {
                        Core.checkpointRestore();
                    }

                    @Override
                    public void afterRestore(Context<? extends Resource> c) {
                    }
                });
                break;
            case "concurrent": {
                register(new Named("a", false, false));
                Runnable call = () -> {
                    try {
                        Core.checkpointRestore();
                        System.out.println("caller " + Thread.currentThread().getName() + " returned");
                    } catch (Exception e) {
                        System.out.println("caller " + Thread.currentThread().getName() + " failed " + e);
                    }
                };
                Thread t1 = new Thread(call, "one");
                Thread t2 = new Thread(call, "two");
                t1.start();
                t2.start();
                t1.join();
                t2.join();
                System.out.println("done");
                Thread.sleep(100_000);
                return;
            }
            case "handover": {
                // The main thread ends while the checkpoint's notifications run (the JVM's
                // last non-daemon thread): the JVM must live on until the checkpoint is done.
                java.util.concurrent.CountDownLatch started = new java.util.concurrent.CountDownLatch(1);
                register(new Resource() {
                    @Override
                    public void beforeCheckpoint(Context<? extends Resource> c) throws Exception {
                        System.out.println("before slow");
                        started.countDown();
                        Thread.sleep(1000);
                    }

                    @Override
                    public void afterRestore(Context<? extends Resource> c) {
                        System.out.println("after slow");
                    }
                });
                System.out.println("tick 1");
                started.await();
                System.out.println("main returns");
                return;
            }
            case "jcmd":
                register(new Named("a", false, false));
                for (int i = 1; ; i++) {
                    System.out.println("tick " + i);
                    Thread.sleep(50);
                }
            default:
                break;
        }
        System.out.println("checkpointing");
        try {
            Core.checkpointRestore();
            System.out.println("returned normally");
        } catch (CheckpointException e) {
            System.out.println("CheckpointException " + e.getSuppressed().length);
            for (Throwable t : e.getSuppressed()) {
                System.out.println("  suppressed " + t);
            }
        } catch (RestoreException e) {
            System.out.println("RestoreException " + e.getSuppressed().length);
            for (Throwable t : e.getSuppressed()) {
                System.out.println("  suppressed " + t);
            }
        }
        CRaCMXBean mx = CRaCMXBean.getCRaCMXBean();
        System.out.println("restore time " + (mx.getRestoreTime() > 0 ? "set" : mx.getRestoreTime())
                + " uptime since restore " + (mx.getUptimeSinceRestore() >= 0 ? "set" : "-1"));
        System.out.println("uuid " + UUID.randomUUID());
        System.out.println("done");
        Thread.sleep(100_000);
    }
}
