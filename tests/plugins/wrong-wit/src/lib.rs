//! A component that targets a future version of the plugin package, `kube-scheduler:plugin@0.4.0`.
//! The host serves 0.1.0, 0.2.0 and 0.3.0 and must refuse it by name before running any of its code.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        inline: "
            package kube-scheduler:plugin@0.4.0;

            interface plugin-api {
                init: func(args-json: string) -> result<_, string>;
            }

            world plugin {
                export plugin-api;
            }
        ",
        world: "plugin",
    });

    struct FromTheFuture;

    impl exports::kube_scheduler::plugin::plugin_api::Guest for FromTheFuture {
        fn init(_args: String) -> Result<(), String> {
            Ok(())
        }
    }

    export!(FromTheFuture);
}
