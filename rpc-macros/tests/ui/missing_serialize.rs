// An argument type without `Serialize` is reported once, on the type, though the client encodes it and the
// server decodes it; the trait, its implementation and the calls that use it show nothing more.
#[derive(serde::Deserialize)]
struct Point {
    x: i32,
}

#[rpc_core::service]
trait Plot {
    async fn draw(&self, at: Point, label: String) -> bool;
}

struct Plotter;

impl Plot for Plotter {
    async fn draw(&self, at: Point, label: String) -> bool {
        at.x > 0 && !label.is_empty()
    }
}

async fn use_it(client: PlotClient) {
    let _ = client.draw(Point { x: 1 }, String::new()).await;
    let _ = rpc_core::Server::builder().add_service(PlotServer::new(Plotter));
}

fn main() {
    let _ = use_it;
}
