//! The child process of the import kill test: `counterpoint import` of the stream in the file
//! given first into the embedded store in the directory given second, one event an append (one
//! flush each, so the import takes long enough to be killed in the middle), printing `READY`
//! as it starts, until it finishes or is killed.

use std::io::BufReader;

use counterpoint::store::EmbeddedStore;
use counterpoint::transfer::{self, ImportOptions, MappingFile, StreamReader};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (stream, dir) = (args.next().expect("usage: importer STREAM DIR"), args.next().expect("usage: importer STREAM DIR"));
    let store = EmbeddedStore::open(std::path::Path::new(&dir).join("events")).expect("open the event store");
    let reader = StreamReader::open(BufReader::new(std::fs::File::open(&stream).expect("open the stream"))).expect("a stream");
    println!("READY");
    let options = ImportOptions { batch: 1, into: None };
    transfer::import(&store, reader, None::<&mut MappingFile<Vec<u8>>>, &options).await.expect("the import");
}
