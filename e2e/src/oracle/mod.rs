pub mod fraud;
