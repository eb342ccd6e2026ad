fn main() {
    crac_shim::jcmd::main()
}
