public class T1 { [Fact] public void A() => Assert.True(LLama.Native.NativeApi.llama_max_devices() > 0); }
