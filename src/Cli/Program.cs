System.Console.WriteLine("weft");
