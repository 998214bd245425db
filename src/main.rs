fn main() -> std::process::ExitCode {
    hostrole::cli::main()
}
