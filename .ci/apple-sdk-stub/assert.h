/* For CI's cross `cargo check` for macOS only (see TargetConditionals.h here). */
#define assert(x) ((void)0)
