return await Weft.Silo.WeftSilo.RunAsync(args);
