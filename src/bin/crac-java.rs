fn main() {
    crac_shim::launcher::main()
}
